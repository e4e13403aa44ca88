"""Which channels matter: the cost of knocking out every channel of one layer, in passes of
the set.

`sevis.channel_importance` over N images (decoded once, in memory) for every channel of
a layer, against one plain forward pass of the same images through the same model: each
knock-out runs only from the layer's module on, several channels to a pass, so a channel
should cost about the share of the network after the layer, not a whole pass. Side by
side in one run: the same few channels knocked out with whole forward passes (what
`with sevis.knockout(...)` and a plain `model(x)` per channel cost), and their ratio.

    python bench/importance.py [--images 50] [--layer SE_5_2] [--channels all|N] [--model se_resnet50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from extract import image_folder  # noqa: E402

import sevis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--layer", default="SE_5_2")
    parser.add_argument("--channels", default="all", help="'all', or how many of the first channels")
    parser.add_argument("--model", default="se_resnet50")
    parser.add_argument("--compare", type=int, default=8, help="channels also knocked out with whole passes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = sevis.load_model(args.model, "untrained")
    with tempfile.TemporaryDirectory() as tmp:
        data = image_folder(Path(tmp) / "data", args.images)
        paths = sorted(data.rglob("*.jpg"))
        x = sevis.preprocess(model, [sevis.decode_image(p.read_bytes()) for p in paths])
        labels = [p.parent.name for p in paths]
    truth = [k % 1000 for k in range(len(x))]  # any classes: the cost does not depend on them
    batches = [(x, truth, labels)]
    with torch.inference_mode():
        model(x[:4])  # warm-up
    compare = list(range(args.compare))
    plain, whole, resumed = [], [], []
    for _ in range(args.repeats):  # alternating, so drifts in the machine's speed hit all alike
        with torch.inference_mode():
            start = time.perf_counter()
            model(x)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            for c in compare:
                with sevis.knockout(model, {args.layer: sevis.Channels({c: 0.0})}):
                    model(x)
            whole.append((time.perf_counter() - start) / len(compare))
        start = time.perf_counter()
        sevis.channel_importance(model, batches, args.layer, compare)
        resumed.append((time.perf_counter() - start) / len(compare))
    p, w, r = (statistics.median(v) for v in (plain, whole, resumed))
    print(f"{args.model} (random weights, same cost), {args.layer}, {len(x)} images in memory (one batch), ")
    print(f"torch {torch.get_num_threads()} threads; median of {args.repeats} alternating runs")
    print(f"  one plain pass of the set:                    {p:7.2f} s")
    print(f"  a channel by a whole knocked-out pass:        {w:7.2f} s  = {w / p:.2f} passes")
    print(
        f"  a channel by channel_importance ({len(compare)} channels): {r:7.2f} s  = {r / p:.2f} passes "
        f"(whole / resumed {w / r:.1f}x, min-max of the pairs "
        f"{min(a / b for a, b in zip(whole, resumed, strict=True)):.1f}-"
        f"{max(a / b for a, b in zip(whole, resumed, strict=True)):.1f}x)"
    )
    count = None if args.channels == "all" else int(args.channels)
    channels = None if count is None else list(range(count))
    start = time.perf_counter()
    result = sevis.channel_importance(model, batches, args.layer, channels)
    total = time.perf_counter() - start
    n = len(result.table)
    print(
        f"  every one of {n:,} {result.index_name}s: {total:7.1f} s = {total / p:.0f} passes of the set "
        f"({total / n:.3f} s, {total / n / p:.3f} passes a {result.index_name}); knocked-out images: "
        f"{result.runs['knock-outs']:,}, images through the whole network: {result.runs['network']:,}"
    )
    print(f"  each knock-out's pass resumed at the {result.resumed} module (only what follows it runs)")


if __name__ == "__main__":
    main()
