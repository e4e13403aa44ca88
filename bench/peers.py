"""sevis against the tools people use today to look inside a CNN, same image, same model.

sevis's complete analysis (all 16 SE layers captured, plus per-class statistics)
against one Grad-CAM map from torch-cam and one from pytorch-grad-cam, each from the
same preprocessed photograph, alternating, in one run. Also the bare forward, the
limit for anything that needs one forward pass.

    pip install -r bench/requirements.txt
    python bench/peers.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sevis  # noqa: E402


def contenders(model: torch.nn.Module, x: torch.Tensor) -> dict:
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from torchcam.methods import GradCAM as TorchCamGradCAM

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    def sevis_all_layers() -> None:
        stats = sevis.ExcitationStats()
        with torch.inference_mode(), sevis.capture(model) as cap:
            logits = model(x)
        stats.update(cap.excitations, sevis.predicted_labels(logits, model.sevis_info.class_names))
        assert len(stats.layers) == 16

    def torchcam_one_map() -> None:
        with TorchCamGradCAM(model, target_layer="layer4") as extractor:
            out = model(x)
            cams = extractor(out.argmax(1).item(), out)
        assert cams[0].shape[-2:] == (7, 7)

    pgc = PGCGradCAM(model=model, target_layers=[model.layer4])

    def grad_cam_one_map() -> None:
        maps = pgc(input_tensor=x, targets=None)
        assert maps.shape == (1, 224, 224)

    return {
        "bare forward": bare,
        "sevis: 16 SE layers + statistics": sevis_all_layers,
        "torch-cam: one Grad-CAM map": torchcam_one_map,
        "pytorch-grad-cam: one Grad-CAM map": grad_cam_one_map,
    }


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    model = sevis.load_model("se_resnet50", "untrained")
    image = sevis.decode_image((ROOT / "assets" / "chelsea.png").read_bytes())
    x = sevis.preprocess(model, image)
    fns = contenders(model, x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    names = list(fns)
    for i in range(args.repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate who goes first
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    bare = statistics.median(times["bare forward"])
    rows = []
    print(f"SE-ResNet-50, one 224 x 224 photograph, CPU, {torch.get_num_threads()} threads, median of {args.repeats}:")
    for name in names:
        t = statistics.median(times[name])
        rows.append((name, t, min(times[name]), max(times[name])))
        print(
            f"   {name:38s} {1000 * t:7.1f} ms  ({t / bare:.2f}x the bare forward; "
            f"min {1000 * min(times[name]):.1f}, max {1000 * max(times[name]):.1f})"
        )
    return rows


if __name__ == "__main__":
    main()
