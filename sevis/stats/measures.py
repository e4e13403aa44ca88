"""Measures of a layer sevis adds to the papers: class-specificity (omega squared) with its
permutation chance band, and saturation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .._threads import one_torch_thread, workers

__all__ = [
    "PERMUTATIONS",
    "SATURATED_HIGH",
    "SATURATED_LOW",
    "NullBand",
    "band_ranks",
    "kept_positions",
    "omega_squared",
    "saturation",
    "specificity_null",
    "specificity_nulls",
]


SATURATED_HIGH = 0.99
"""A gate at or above this passes its channel almost unchanged (saturated towards identity)."""


SATURATED_LOW = 0.01
"""A gate at or below this all but silences its channel."""


MIN_STD = 1e-6
"""Positions whose standard deviation across images is below this (about ten float32 steps
at 1.0) count as constant in the class-specificity."""


RELATIVE_STD = 1e-3
"""... and so do positions whose standard deviation is below this share of the layer's
largest: the rule is relative to the layer, so it does not change with the number of images."""


def kept_positions(ss_total: np.ndarray, n: int) -> np.ndarray:
    """Which positions (channels, groups) vary enough to count in the class-specificity:
    std across the ``n`` images at least ``MIN_STD`` and at least ``RELATIVE_STD`` of the
    layer's largest std."""
    if n < 2:
        return np.zeros(np.shape(ss_total), bool)
    std = np.sqrt(np.maximum(ss_total, 0.0) / (n - 1))
    return std >= max(MIN_STD, RELATIVE_STD * float(std.max(initial=0.0)))


def omega_squared(counts: np.ndarray, means: np.ndarray, ss_total: np.ndarray) -> np.ndarray:
    """Per position, the share of variance the class explains, corrected for chance (omega
    squared, Hays 1963): (SS_between - (k - 1) MS_within) / (SS_total + MS_within), with
    MS_within = SS_within / (N - k). With no class effect its expected value is about 0 for
    any number and size of classes (eta squared's is (k - 1) / (N - 1)).

    Args:
        counts: images per class, (k,).
        means: each class's mean, (k, D).
        ss_total: sum of squared deviations from the overall mean over all N images, (D,).

    Returns:
        (D,); NaN where N - k < 1 (no within-class degrees of freedom) or k < 2.
    """
    counts = np.asarray(counts, dtype=np.float64)
    k, n = len(counts), counts.sum()
    if k < 2 or n - k < 1:
        return np.full(np.shape(ss_total), np.nan)
    overall = (counts[:, None] * means).sum(0) / n
    ss_between = (counts[:, None] * (means - overall) ** 2).sum(0)
    ms_within = np.maximum(ss_total - ss_between, 0.0) / (n - k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ss_between - (k - 1) * ms_within) / (ss_total + ms_within)


PERMUTATIONS = 199
"""Label permutations of a chance band: with 199, the band from the 5th to the 195th of
their sorted values holds the measured statistic of uninformative labels with probability
190 / 200 = 95 % exactly (see :func:`band_ranks`)."""


def band_ranks(permutations: int, level: float = 0.95) -> tuple[int, int, float]:
    """Which of ``permutations`` sorted permutation statistics bound a band, and its coverage.

    With uninformative labels the measured statistic and the B permuted ones are
    exchangeable: it falls below the a-th smallest with probability a / (B + 1) and above
    the (B + 1 - a)-th with the same probability. ``a`` is the largest with
    2a / (B + 1) <= 1 - ``level``, so the band holds it with probability
    (B + 1 - 2a) / (B + 1), at least ``level`` (exactly, where (B + 1)(1 - level) / 2 is
    a whole number: 199 permutations at 95 %). With too few permutations for ``level``
    (fewer than 39 at 95 %) ``a`` is 1, the band their whole range, and its coverage
    (B - 1) / (B + 1) is below ``level``: the returned coverage says so.

    Returns:
        ``(a, B + 1 - a, coverage)``: the 1-based ranks of the band's ends and its coverage.
    """
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    a = max(1, int(np.floor((permutations + 1) * (1 - level) / 2 + 1e-9)))
    return a, permutations + 1 - a, (permutations + 1 - 2 * a) / (permutations + 1)


@dataclass(frozen=True)
class NullBand:
    """A layer's class-specificity under label permutations of ``images`` images: the mean
    over ``permutations`` shufflings and the band between two of their order statistics,
    which holds the statistic of uninformative labels with probability ``coverage``
    (:func:`band_ranks`)."""

    mean: float
    low: float
    high: float
    permutations: int
    images: int = 0
    coverage: float = float("nan")


def specificity_null(
    values: np.ndarray, labels: Sequence[str], *, permutations: int = PERMUTATIONS, level: float = 0.95, seed: int = 0
) -> NullBand:
    """The class-specificity a layer gets when the labels carry no information: its omega
    squared (averaged over its kept positions, as :meth:`ClassStats.specificity`) for
    ``permutations`` shufflings of ``labels`` over the rows of ``values`` (N, D); their mean
    and the band that holds ``level`` of such statistics (:func:`band_ranks`; NaN with
    fewer than two classes or no varying position)."""
    return specificity_nulls({"": values}, labels, permutations=permutations, level=level, seed=seed)[""]


def specificity_nulls(
    rows: Mapping[str, torch.Tensor | np.ndarray],
    labels: Sequence[str],
    *,
    permutations: int = PERMUTATIONS,
    level: float = 0.95,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, NullBand]:
    """:func:`specificity_null` of every layer: ``rows`` maps a layer to its (N, D) per-image
    values (the first summary field), one label per row; each permutation shuffles the
    labels of every layer alike. ``threads``: how many to spread the work over (default
    one per core torch uses; a server's background band leaves a core to the pages).

    All layers' varying positions are one (N, P) matrix, so a permutation is one
    ``index_add`` of the rows into class sums and a few passes over them: 200 permutations
    of 2,000 images of 1,000 classes over SE-ResNet-50's 15,104 channels take under a
    second on two cores."""
    _, codes = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
    n, k = len(codes), (int(codes.max()) + 1 if len(codes) else 0)
    for raw in rows.values():
        if np.ndim(raw) != 2 or len(raw) != n:
            raise ValueError(f"values must have shape (N, D) with N = {n} labels, got {tuple(np.shape(raw))}")
    # NOTE every layer centred into one float32 matrix (rows for index_add), a block of
    # rows at a time: no float64 copy of a layer (a 50,000-image run's SE_5 layers are
    # 400 MB each in float32); each position's mean and sum of squares in float64
    full = np.empty((n, sum(np.shape(raw)[1] for raw in rows.values())), np.float32)
    kept = np.zeros(full.shape[1], bool)
    ss_full = np.zeros(full.shape[1])
    spans, begin, start = {}, 0, 0
    for layer, raw in rows.items():
        values = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        end = begin + values.shape[1]
        mean = values.mean(0, dtype=np.float64) if n else np.zeros(values.shape[1])
        for first in range(0, n, _CENTRE_ROWS):
            part = full[first : first + _CENTRE_ROWS, begin:end]
            np.subtract(values[first : first + _CENTRE_ROWS], mean, out=part, casting="unsafe")
            wide = part.astype(np.float64)
            ss_full[begin:end] += np.einsum("ij,ij->j", wide, wide)
        kept[begin:end] = kept_positions(ss_full[begin:end], n)
        count = int(kept[begin:end].sum())
        spans[layer] = (start, start + count)
        begin, start = end, start + count
    x_all = full if kept.all() else full[:, kept]
    ss_total = ss_full[kept]
    nan_band = NullBand(float("nan"), float("nan"), float("nan"), 0, n)
    if k < 2 or n - k < 1 or start == 0:
        return dict.fromkeys(rows, nan_band)
    x = torch.from_numpy(np.ascontiguousarray(x_all))
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    inverse = torch.from_numpy((1.0 / counts).astype(np.float32))
    rng = np.random.default_rng(seed)
    shuffled = [torch.from_numpy(rng.permutation(codes)) for _ in range(permutations)]
    scores = np.empty((permutations, x.shape[1]))
    # NOTE every permutation over a block of columns at a time: the block's class sums
    # (k x width, about 1 MB) stay in the core's cache, which halves the time against
    # whole rows; blocks are shared among threads of one torch thread each
    width = min(x.shape[1], max(128, (1 << 18) // k))
    blocks = [(b, min(b + width, x.shape[1])) for b in range(0, x.shape[1], width)]

    def score(share: list[tuple[int, int]]) -> None:
        with one_torch_thread():
            sums = torch.empty(k, width)
            between = torch.empty(permutations, width)
            for begin, end in share:
                block, part, ss = x[:, begin:end].contiguous(), sums[:, : end - begin], ss_total[begin:end]
                for p, permuted in enumerate(shuffled):
                    part.zero_().index_add_(0, permuted, block)
                    # centred data: SS_between = sum over classes of sum^2 / n
                    torch.mv(part.square_().T, inverse, out=between[p, : end - begin])
                ss_between = between[:, : end - begin].double().numpy()
                ms_within = np.maximum(ss - ss_between, 0.0) / (n - k)
                scores[:, begin:end] = (ss_between - (k - 1) * ms_within) / (ss + ms_within)

    threads = max(1, min(threads or workers(), len(blocks)))
    with ThreadPoolExecutor(threads, thread_name_prefix="sevis-null") as pool:
        list(pool.map(score, [blocks[i::threads] for i in range(threads)]))
    first_rank, last_rank, coverage = band_ranks(permutations, level)
    bands = {}
    for layer, (begin, end) in spans.items():
        if begin == end:
            bands[layer] = nan_band
            continue
        per_permutation = scores[:, begin:end].mean(1)
        ordered = np.sort(per_permutation)
        low, high = ordered[first_rank - 1], ordered[last_rank - 1]
        bands[layer] = NullBand(float(per_permutation.mean()), float(low), float(high), permutations, n, coverage)
    return bands


_CENTRE_ROWS = 4096
"""Rows centred (and squared in float64) at a time by :func:`specificity_nulls`."""


def saturation(values: np.ndarray, high: float = SATURATED_HIGH, low: float = SATURATED_LOW) -> dict[str, float]:
    """How saturated a set of gate values is: the share at or above ``high``, at or below
    ``low``, and the mean of ``values`` (any shape)."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "share_high": float(np.mean(values >= high)),
        "share_low": float(np.mean(values <= low)),
    }
