"""The chance band of a saved run: its coverage with uninformative labels, and what it detects.

A run-shaped data set (ImageNet's validation layout: 1,000 classes, N = 8,000 or 50,000
images; D positions near a sigmoid's range, correlated through a few shared factors as a
layer's channels are) gets labels that carry no class information, a new draw per seed.
For each seed the class-specificity of the labels (`ClassStats.specificity`, omega
squared over the positions that vary) is compared with

  - the run's own band: 199 permutations of every row (`specificity_nulls`, what
    `Run.null_bands` computes a layer at a time), and
  - the band sevis drew before: 200 permutations of a 2,000-image sample, its central
    95 % by np.quantile,

and the share of seeds whose statistic falls outside each is printed (95 % coverage: 5 %
outside), with each band's median width. Then a real class effect of omega squared
about 0.002 at N = 50,000 (class means drawn with that share of the variance): how
often it falls above each band.

    python bench/chance_band.py [--seeds 1000] [--large-seeds 400] [--dims 32] [--effect-seeds 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sevis.runs.sample import sample_rows
from sevis.stats.classes import ClassStats
from sevis.stats.measures import PERMUTATIONS, specificity_nulls

CLASSES = 1000


def layer_values(n: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dims) float32 in (0, 1): a logistic of three shared factors plus noise."""
    factors = rng.standard_normal((n, 3)) @ rng.standard_normal((3, dims))
    return (1 / (1 + np.exp(-(1.5 + 0.6 * factors + rng.standard_normal((n, dims)))))).astype(np.float32)


def specificity(values: np.ndarray, labels: list[str]) -> float:
    stats = ClassStats(("excitation",), "channel")
    stats.add({"L": {"excitation": values}}, labels)
    return stats.specificity("L")


def balanced_labels(n: int, rng: np.random.Generator) -> list[str]:
    codes = rng.permutation(np.arange(n) % CLASSES)
    return [f"c{c:04d}" for c in codes]


def sample_band(values: np.ndarray, labels: list[str], seed: int) -> tuple[float, float]:
    """The band sevis drew before this change: 200 permutations of a 2,000-image sample,
    np.quantile's 2.5 % and 97.5 %."""
    pick = sample_rows(len(labels), 2000, 0)
    band = specificity_nulls({"L": values[pick]}, [labels[i] for i in pick], permutations=200, seed=seed)["L"]
    return band.low, band.high  # 200 permutations: ranks 5 and 196 of 201, near np.quantile's 2.5 / 97.5 %


def coverage(n: int, dims: int, seeds: int, sample_seeds: int) -> None:
    rng = np.random.default_rng(n)
    values = layer_values(n, dims, rng)
    outside_own = outside_sample = 0
    widths_own, widths_sample = [], []
    began = time.perf_counter()
    for seed in range(seeds):
        labels = balanced_labels(n, np.random.default_rng([n, seed]))
        observed = specificity(values, labels)
        band = specificity_nulls({"L": values}, labels, seed=seed)["L"]
        outside_own += not band.low <= observed <= band.high
        widths_own.append(band.high - band.low)
        if n > 2000 and seed < sample_seeds:
            low, high = sample_band(values, labels, seed)
            outside_sample += not low <= observed <= high
            widths_sample.append(high - low)
    took = time.perf_counter() - began
    own = 100 * outside_own / seeds
    error = 100 * np.sqrt(0.05 * 0.95 / seeds)
    print(
        f"N = {n:>6,} ({n // CLASSES} a class), {dims} positions, {seeds} seeds of uninformative labels ({took:.0f} s):"
    )
    print(
        f"  the run's own band ({PERMUTATIONS} permutations of all {n:,}): {own:4.1f} % outside "
        f"(target 5 +- 1.5; binomial s.e. {error:.1f}), median width {np.median(widths_own):.5f}"
    )
    if widths_sample:
        print(
            f"  a 2,000-image sample's band (before; {len(widths_sample)} seeds): "
            f"{100 * outside_sample / len(widths_sample):4.1f} % outside, "
            f"median width {np.median(widths_sample):.5f} ({np.median(widths_sample) / np.median(widths_own):.1f}x)"
        )


def detection(n: int, dims: int, seeds: int, omega: float = 0.002) -> None:
    """Class means with a share ``omega`` of each position's variance: omega squared about ``omega``."""
    detected_own = detected_sample = 0
    measured = []
    for seed in range(seeds):
        rng = np.random.default_rng([7, seed])
        noise = layer_values(n, dims, rng).astype(np.float64)
        labels = balanced_labels(n, rng)
        codes = np.array([int(label[1:]) for label in labels])
        spread = noise.std(0) * np.sqrt(omega / (1 - omega))
        means = rng.standard_normal((CLASSES, dims)) * spread
        values = (noise + means[codes]).astype(np.float32)
        observed = specificity(values, labels)
        measured.append(observed)
        band = specificity_nulls({"L": values}, labels, seed=seed)["L"]
        detected_own += observed > band.high
        detected_sample += observed > sample_band(values, labels, seed)[1]
    print(
        f"a class effect at N = {n:,}: omega squared {np.median(measured):.4f} (median of {seeds} seeds); above "
        f"the run's own band in {detected_own} of {seeds}, above a 2,000-image sample's in {detected_sample} of {seeds}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="seeds of uninformative labels at the smaller N")
    parser.add_argument("--large-seeds", type=int, default=400, help="... and at the largest N (each costs more)")
    parser.add_argument("--sample-seeds", type=int, default=100, help="seeds that also compute the old sample band")
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--effect-seeds", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8000, 50000])
    args = parser.parse_args()
    for n in args.sizes:
        coverage(n, args.dims, args.large_seeds if n == max(args.sizes) else args.seeds, args.sample_seeds)
    detection(max(args.sizes), args.dims, args.effect_seeds)


if __name__ == "__main__":
    main()
