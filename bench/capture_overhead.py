"""Capture overhead: forward with sevis.capture over the same forward without it.

Alternates the two in one run (so drift and noise hit both alike) and prints the
median ratio, min-max of per-pair ratios, and images/s. Target: ratio <= 1.03.

    python bench/capture_overhead.py [--batch 8] [--repeats 15] [--device cpu] [--models ...]

The default models are SE- and SGE-ResNet-50 and one network of each module they are
compared with (ECA, SK, ResNeSt, GC, CBAM, BAM), with untrained weights (the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import sevis

MODELS = [
    "se_resnet50",
    "sge_resnet50",
    "ecaresnet50d.miil_in1k",
    "skresnext50_32x4d.ra_in1k",
    "resnest50d.in1k",
    "gcresnet50t.ra2_in1k",
    "cbam_resnet50",
    "bam_resnet50",
    "sk_resnet50",
]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model: torch.nn.Module, batch: int, repeats: int, device: str) -> dict[str, float]:
    x = torch.randn(batch, 3, 224, 224, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def bare() -> None:
        model(x)
        sync()

    layers = len(sevis.find_attention(model))

    def hooked() -> None:
        with sevis.capture(model) as cap:
            model(x)
        sync()
        assert len(cap.values) == layers

    with torch.inference_mode():
        for _ in range(2):  # warm-up: allocator, kernels, caches
            bare()
            hooked()
        pairs = []
        for i in range(repeats):
            # Alternate which goes first, so neither always runs on a warmer machine.
            if i % 2:
                b, h = timed(bare), timed(hooked)
            else:
                h, b = timed(hooked), timed(bare)
            pairs.append((b, h))
    ratios = [h / b for b, h in pairs]
    bare_med = statistics.median(b for b, _ in pairs)
    hooked_med = statistics.median(h for _, h in pairs)
    return {
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "bare_ips": batch / bare_med,
        "hooked_ips": batch / hooked_med,
        "bare_s": bare_med,
        "hooked_s": hooked_med,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        model = sevis.load_model(name, "untrained", device=args.device)
        for batch in args.batch:
            r = measure(model, batch, args.repeats, args.device)
            rows.append({"model": name, "batch": batch, "device": args.device, **r})
            print(
                f"{name:25s} batch {batch:3d} {args.device}: capture/bare = {r['ratio']:.3f} "
                f"(min {r['ratio_min']:.3f}, max {r['ratio_max']:.3f}); "
                f"{r['bare_ips']:.1f} img/s bare, {r['hooked_ips']:.1f} img/s with capture",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
