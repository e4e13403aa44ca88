"""The Channels page's excitation map of a few images: its axes from the SVD of the images'
rows (every image drawn, fewer images than half the channels) against the eigenvectors of the
layer's channels x channels covariance (what a sample of a large set needs). The same
photographs (crops and flips of the sample ones) through SE-ResNet-50 (random weights); the
covariance's way forced by drawing all but one image. Side by side in one run, alternating;
medians, and the largest difference between the two maps' positions of the same image.

    python bench/map_axes.py [--images 4 12 48] [--repeats 7] [--layers SE_4_6 SE_5_2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dashboard import fifty_photographs  # noqa: E402

import sevis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", type=int, default=[4, 12, 48])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", nargs="+", default=["SE_4_6", "SE_5_2"])
    args = parser.parse_args()
    model = sevis.load_model("se_resnet50", "untrained")
    photographs = fifty_photographs()
    print(f"SE-ResNet-50 (random weights), {args.repeats} repeats each, alternating:")
    for n in args.images:
        chosen = photographs[:: max(1, len(photographs) // n)][:n]
        analysis = sevis.analyse(model, [(name, data) for name, _, data in chosen], labels=[c for _, c, _ in chosen])
        for layer in args.layers:
            svd, covariance = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                every = sevis.excitation_map(analysis, layer)
                svd.append(time.perf_counter() - start)
                start = time.perf_counter()
                sample = sevis.excitation_map(analysis, layer, max_points=n - 1)
                covariance.append(time.perf_counter() - start)
            where = every.points.set_index("image").loc[sample.points.image, ["x", "y"]].to_numpy()
            gap = float(np.abs(sample.points[["x", "y"]].to_numpy() - where).max())
            s, c = statistics.median(svd), statistics.median(covariance)
            channels = analysis.images[0].excitations[layer].size
            print(
                f"  {n:>3} images, {layer} ({channels} channels): covariance's eigenvectors {c:.3f} s, "
                f"the rows' SVD {s:.3f} s, ratio {s / c:.3f}; positions differ by at most {gap:.1e}"
            )


if __name__ == "__main__":
    main()
