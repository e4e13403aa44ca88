"""Dashboard speed: upload to charts, model-side work against the bare forward, figures.

Prints, for SE-ResNet-50 on the CPU:
  1. model-side work for one photograph (decode, preprocess, hooked forward, statistics:
     ``sevis.analyse``) over the bare forward of the same preprocessed image; target <= 1.3;
  2. building the Images page's default figures; target < 0.5 s;
  3. upload to all charts built, through the real app script (Streamlit's AppTest):
     one photograph and 50 photographs in 4 classes, warm (model loaded) and cold (first
     model load), and a rerun with the same inputs (cached: the model does not run).

    python bench/dashboard.py [--repeats 11]
    python bench/dashboard.py --actions --repeats 5 [--sessions 3]   # each action in Chromium
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sevis  # noqa: E402
from sevis import figures  # noqa: E402

PHOTOS = sorted((ROOT / "assets").glob("*.png")) + sorted((ROOT / "assets").glob("*.jpg"))


def fifty_photographs() -> list[tuple[str, str, bytes]]:
    """50 real photographs in 4 classes: crops and flips of the four sample photographs."""
    out = []
    for label, path in zip(("cat", "cup", "astronaut", "rocket"), sorted(PHOTOS), strict=True):
        image = Image.open(path).convert("RGB")
        w, h = image.size
        for i in range(13 if label != "rocket" else 11):
            f = 0.7 + 0.02 * i
            crop = image.crop((int(w * (1 - f) / 2), int(h * (1 - f) / 3), int(w * (1 + f) / 2), int(h * (2 + f) / 3)))
            crop = ImageOps.mirror(crop) if i % 2 else crop
            buffer = io.BytesIO()
            crop.save(buffer, "JPEG", quality=90)
            out.append((f"{label}_{i}.jpg", label, buffer.getvalue()))
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_side(repeats: int) -> None:
    model = sevis.load_model("se_resnet50", "untrained")
    data = (ROOT / "assets" / "chelsea.png").read_bytes()
    x = sevis.preprocess(model, sevis.decode_image(data))
    with torch.inference_mode():
        model(x)
    pairs = []
    for i in range(repeats):

        def bare():
            with torch.inference_mode():
                model(x)

        def full():
            sevis.analyse(model, [("chelsea.png", data)])

        order = (bare, full) if i % 2 else (full, bare)
        t = {}
        for fn in order:
            start = time.perf_counter()
            fn()
            t[fn.__name__] = time.perf_counter() - start
        pairs.append((t["bare"], t["full"]))
    ratios = [f / b for b, f in pairs]
    print(
        f"1. one photograph, decode+preprocess+hooked forward+statistics over bare forward: "
        f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
        f"bare {1000 * statistics.median(b for b, _ in pairs):.0f} ms, "
        f"full {1000 * statistics.median(f for _, f in pairs):.0f} ms  [target <= 1.3]"
    )
    result = sevis.analyse(model, [("chelsea.png", data)])
    image = result.images[0]

    def build():
        figures.top_classes(image.top_classes, image.top_probs)
        figures.excitation_profiles({image.name: image.excitations}, sevis.paper_layers(list(image.excitations)))
        figures.excitation_overview(image.excitations)

    build()
    se_s = median_time(build, repeats)
    sge = sevis.load_model("sge_resnet50", "untrained")
    sge_image = sevis.analyse(sge, [("chelsea.png", data)], keep_values=True).images[0]

    def build_sge():
        figures.top_classes(sge_image.top_classes, sge_image.top_probs)
        masks = sge_image.masks["SGE_4_6"]
        figures.mask_grid(masks, "SGE_4_6")
        figures.heat_overlay(sge_image.view, masks.mean(0), title="mean", zrange=None)

    build_sge()
    sge_s = median_time(build_sge, repeats)
    print(f"2. default figures: SE page {1000 * se_s:.0f} ms, SGE page {1000 * sge_s:.0f} ms  [target < 500 ms]")


def upload_to_charts() -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    one = [("chelsea.png", (ROOT / "assets" / "chelsea.png").read_bytes(), "image/png")]
    fifty = fifty_photographs()

    def app(page: str | None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.run()
        at.sidebar.selectbox(key="se_resnet50_source").set_value("untrained").run()
        if page:
            at.switch_page(page).run()
        return at

    def timed_run(at: AppTest) -> float:
        start = time.perf_counter()
        at.run()
        assert not at.exception, at.exception
        return time.perf_counter() - start

    # Cold: a fresh server's first page, loading a 110 MB checkpoint in the SENet layout.
    import tempfile

    import timm

    checkpoint = Path(tempfile.mkdtemp()) / "se_resnet50-ce0d4300.pth"
    torch.save(timm.create_model("legacy_seresnet50").state_dict(), checkpoint)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    at.sidebar.selectbox(key="se_resnet50_source").set_value("server").run()
    at.sidebar.text_input(key="se_resnet50_path").set_value(str(checkpoint))
    rows = [("cold: first open, checkpoint file load, 4 sample photographs", timed_run(at))]
    checkpoint.unlink()

    at = app(None)
    at.get("file_uploader")[0].set_value(one)
    rows.append(("one photograph, Images page", timed_run(at)))
    rows.append(("same photograph again (rerun, cached)", timed_run(at)))
    at = app("sevis/app/views/classes.py")
    at.number_input(key="classes_count").set_value(4).run()
    for i, label in enumerate(("cat", "cup", "astronaut", "rocket")):
        at.text_input(key=f"classes_label_{i}").set_value(label)
        at.get("file_uploader")[i].set_value([(n, d, "image/jpeg") for n, lab, d in fifty if lab == label])
    rows.append(("50 photographs in 4 classes, Classes page", timed_run(at)))
    assert len(at.get("plotly_chart")) == 4  # profiles, histograms, depth curve, selectivity
    rows.append(("same 50 again (rerun, cached)", timed_run(at)))
    print("3. upload to all charts built (server side, AppTest):")
    for name, seconds in rows:
        print(f"   {name}: {seconds:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--actions", action="store_true", help="instead: each action in Chromium (bench/actions.py)")
    parser.add_argument("--sessions", type=int, default=3, help="with --actions: sessions at once after one alone")
    parser.add_argument(
        "--height", type=int, default=4200, help="with --actions: the browser window's height in px (a screen: ~1000)"
    )
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.actions:
        from actions import run

        run(args.repeats, args.sessions, args.height)
        return
    model_side(args.repeats)
    upload_to_charts()


if __name__ == "__main__":
    main()
