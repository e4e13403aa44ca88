"""The Channels page's knock-out table: one channel forced to 0 and to 1 over the images it
shows, with whole forward passes (`sevis.knockout_effects`: three passes) against passes
resumed at the layer (`sevis.jobs.importance.layer_knockout_effects`: one plain pass, then
only the network after the layer, twice). Side by side in one run, alternating; medians.

    python bench/knockout_table.py [--images 12] [--repeats 7] [--layers SE_3_4 SE_4_6 SE_5_2] [--threads N]
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
from sevis.jobs.importance import layer_knockout_effects  # noqa: E402

PHOTOS = sorted((ROOT / "assets").glob("*.png")) + sorted((ROOT / "assets").glob("*.jpg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="the page shows 6 at each end")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", nargs="+", default=["SE_3_4", "SE_4_6", "SE_5_2"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = sevis.load_model("se_resnet50", "untrained")
    images = [sevis.decode_image(PHOTOS[i % len(PHOTOS)].read_bytes()) for i in range(args.images)]
    x = sevis.preprocess(model, images)
    knocked = {"0": sevis.Channels({7: 0.0}), "1": sevis.Channels({7: 1.0})}
    with torch.inference_mode():
        model(x[:2])  # warm-up
    threads = torch.get_num_threads()
    print(
        f"SE-ResNet-50 (random weights), {args.images} images, {threads} torch thread(s), {args.repeats} repeats each:"
    )
    for layer in args.layers:
        whole, resumed = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sevis.knockout_effects(model, x, {k: {layer: r} for k, r in knocked.items()})
            whole.append(time.perf_counter() - start)
            start = time.perf_counter()
            layer_knockout_effects(model, x, layer, knocked)
            resumed.append(time.perf_counter() - start)
        w, r = statistics.median(whole), statistics.median(resumed)
        print(f"  {layer}: whole passes {w:.2f} s, resumed at the layer {r:.2f} s, ratio {r / w:.2f}")


if __name__ == "__main__":
    main()
