"""Per-class statistics of captured attention, accumulated batch by batch.

The SENet paper's "Role of Excitation" analysis (arXiv:1709.01507, TPAMI Figures 6
and 7) plots, per SE layer, each channel's mean excitation over the images of a class
(one line per class, plus all images) and the standard deviation across instances.

:class:`ClassStats` is the one accumulator every attention kind uses: per layer, per
*summary field* (an (N, D) array per batch: SE's excitation vector, SGE's per-group
mask mean and spatial variance) and per class, it merges counts, means and sums of
squared deviations (Chan et al.), and counts attention values in fixed bins over
[0, 1]. Memory is bounded by layers x classes x D, whatever the number of images.
:class:`ExcitationStats` and :class:`MaskStats` name its parts in SE's and SGE's terms.

Conventions: standard deviations across images are sample ones (ddof = 1, undefined (NaN) for a
single image); a mask's spatial variance is over its H x W positions (ddof = 0). The
aggregate over all images is kept under :data:`ALL`, a key no class label can equal
(a class may be called "all images"); tables write it as an empty class.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

import numpy as np
import pandas as pd
import torch

from ._threads import one_torch_thread, workers

__all__ = [
    "ALL",
    "BIN_EDGES",
    "SATURATED_HIGH",
    "SATURATED_LOW",
    "ClassKey",
    "ClassStats",
    "ExcitationStats",
    "MaskStats",
    "NullBand",
    "StatsByKind",
    "kept_positions",
    "mask_overview",
    "mask_summary",
    "mean_mask",
    "omega_squared",
    "predicted_labels",
    "saturation",
    "specificity_null",
    "specificity_nulls",
    "top_groups",
]


class _AllImages:
    """The key of the all-images aggregate; pickles (and deep-copies) as itself."""

    def __repr__(self) -> str:
        return "ALL"

    def __str__(self) -> str:
        return "all images"

    def __reduce__(self) -> str:
        return "ALL"


ALL: Final = _AllImages()
"""Key of the statistics over all images, next to the class labels (which are str)."""

ClassKey = str | _AllImages
N_BINS = 50
BIN_EDGES = np.linspace(0.0, 1.0, N_BINS + 1)
"""Fixed histogram bins over [0, 1]: attention values are sigmoid outputs."""


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _tensor(x: torch.Tensor | np.ndarray, rows: int) -> torch.Tensor:
    """``x`` as a CPU tensor of ``rows`` rows (a view where it can be; never written to)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().reshape(rows, -1)
    with warnings.catch_warnings():  # read-only arrays (Parquet's) are only read
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(x)).reshape(rows, -1)


def _double(
    values: torch.Tensor | np.ndarray, rows: int, converted: dict[int, torch.Tensor], scratch: _Scratch
) -> torch.Tensor:
    """``values`` as float64 (rows, -1) in a work buffer; the same array converted once
    (``converted``, by identity)."""
    if id(values) not in converted:
        given = _tensor(values, rows)
        buffer = scratch.get(given.shape, torch.float64, len(converted) + 1)
        converted[id(values)] = buffer.copy_(given)
    return converted[id(values)]


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with at least ``rows`` rows, new rows zero (capacity doubles)."""
    if len(array) >= rows:
        return array
    grown = np.zeros((max(rows, 2 * len(array)), *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    return grown


class _Scratch:
    """Reusable work buffers by (shape, dtype, slot). NOTE a 50,000-image run adds 800
    batches x 16 layers; fresh 16 MB temporaries for each would be mapped and zeroed by the
    kernel every time (a third of the reading time went to that)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[tuple[int, ...], torch.dtype, int], torch.Tensor] = {}

    def get(self, shape: tuple[int, ...], dtype: torch.dtype, slot: int = 0) -> torch.Tensor:
        key = (tuple(shape), dtype, slot)
        if key not in self._buffers:
            if len(self._buffers) > 32:  # shapes of many sizes (a last short batch): start over
                self._buffers.clear()
            self._buffers[key] = torch.empty(shape, dtype=dtype)
        return self._buffers[key]


FINE_BINS = 100
"""Internal value bins over [0, 1]: 0.01 and 0.99 are edges, so the saturation counts are
bin sums; pairs of them make the public :data:`BIN_EDGES` bins."""


class _Moments:
    """Per class (rows indexed by class code): the count, and the sums of x - K and of
    (x - K)^2 in float64, K a per-position shift (the first batch's mean).

    The shifted-data algorithm: a batch of any mixture of classes is two ``index_add`` s,
    whatever the number of classes, and the all-images moments are the sums over classes.
    The shift keeps the sums near the data's spread, so their variance keeps its precision
    (relative error about 1e-16 times (range / std)^2)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.shift: np.ndarray | None = None
        self.n = np.zeros(0, np.int64)
        self.s = np.zeros((0, dim))
        self.q = np.zeros((0, dim))

    def add(self, codes: torch.Tensor, classes: int, values: torch.Tensor, scratch: _Scratch) -> None:
        """Add rows ``values`` (N, D), float64, of classes ``codes`` (N,); ``values`` are only read."""
        if self.shift is None:  # NaN-proof: a NaN in the first batch must not spoil every class
            self.shift = values.nanmean(0).nan_to_num(0.0).numpy()
        self.n, self.s, self.q = (_grown(a, classes) for a in (self.n, self.s, self.q))
        x = torch.sub(values, torch.from_numpy(self.shift), out=scratch.get(values.shape, torch.float64))
        torch.from_numpy(self.n).index_add_(0, codes, torch.ones(len(codes), dtype=torch.int64))
        torch.from_numpy(self.s).index_add_(0, codes, x)
        torch.from_numpy(self.q).index_add_(0, codes, x.square_())

    def trimmed(self, rows: int) -> _Moments:
        """A copy without the rows past ``rows`` (views of these arrays)."""
        out = copy.copy(self)
        out.n, out.s, out.q = self.n[:rows], self.s[:rows], self.q[:rows]
        return out

    def merge(self, other: _Moments, codes: np.ndarray) -> None:
        """Add ``other``'s classes, its row i going to row ``codes[i]``."""
        if other.shift is None:
            return
        if self.shift is None:
            self.shift = other.shift.copy()
        # rows past the other's classes are spare capacity; classes it never saw here have none
        k = min(len(codes), len(other.n))
        keep = codes[:k] >= 0  # a code of -1 leaves the class out
        codes, count, s, q = codes[:k][keep], other.n[:k][keep], other.s[:k][keep], other.q[:k][keep]
        self.n, self.s, self.q = (_grown(a, int(codes.max(initial=-1)) + 1) for a in (self.n, self.s, self.q))
        # x - K = (x - K') + d: re-express the other's sums about this shift
        d = other.shift - self.shift
        n = count[:, None].astype(np.float64)
        np.add.at(self.n, codes, count)
        np.add.at(self.s, codes, s + n * d)
        np.add.at(self.q, codes, q + 2 * d * s + n * d**2)

    def count(self, i: int | None) -> int:
        return int(self.n.sum() if i is None else (self.n[i] if i < len(self.n) else 0))

    def mean(self, i: int | None) -> np.ndarray:
        n, s = (self.n.sum(), self.s.sum(0)) if i is None else (self.n[i], self.s[i])
        if n == 0 or self.shift is None:
            return np.full(self.dim, np.nan)
        return self.shift + s / n

    def m2(self, i: int | None) -> np.ndarray:
        """Sum of squared deviations from the mean (0 for no rows)."""
        n, s, q = (self.n.sum(), self.s.sum(0), self.q.sum(0)) if i is None else (self.n[i], self.s[i], self.q[i])
        if n == 0:
            return np.zeros(self.dim)
        return np.maximum(q - s * s / n, 0.0)

    def std(self, i: int | None) -> np.ndarray:
        """Sample standard deviation (ddof = 1); NaN for fewer than two rows, where it is undefined."""
        n = self.count(i)
        return np.sqrt(self.m2(i) / (n - 1)) if n > 1 else np.full(self.dim, np.nan)

    def means(self, classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts (k,) and means (k, D) of the first ``classes`` classes."""
        n, s = _grown(self.n, classes)[:classes], _grown(self.s, classes)[:classes]
        with np.errstate(invalid="ignore", divide="ignore"):
            return n.astype(np.float64), (self.shift if self.shift is not None else 0.0) + s / n[:, None]


class _Counts:
    """Per class: attention values counted in :data:`FINE_BINS` bins over [0, 1] (values
    outside clipped, NaN not counted), and the sum of their distances from 1."""

    def __init__(self) -> None:
        self.bins = np.zeros((0, FINE_BINS), np.int64)
        self.gap = np.zeros(0)

    def add(self, codes: torch.Tensor, classes: int, values: torch.Tensor, scratch: _Scratch) -> None:
        """Count rows ``values`` (N, ...), float64, of classes ``codes`` (N,); ``values`` are only read."""
        self.bins, self.gap = _grown(self.bins, classes), _grown(self.gap, classes)
        x = values.reshape(len(codes), -1)
        low, high = (float(v) for v in torch.aminmax(x))
        slots = torch.mul(codes, FINE_BINS + 1)  # each class's FINE_BINS + 1 slots: bins, then 1.0 or NaN
        if low >= 0.0 and high <= 1.0 and classes * (FINE_BINS + 1) < 2**24:
            # NOTE the common case (sigmoid outputs) in three passes: slot + 100 x in float64,
            # then int64, which truncates (floor, for x >= 0). The sum rounds by at most 2^-29
            # (slots below 2^24), and a float32 x not equal to an edge k/100 is at least
            # 2^-30 / 25 from it, so 100 x at least 2^-28 from an integer: the bin is exact.
            # x = 1 lands in the class's last slot, and belongs to the last (closed) bin, as
            # np.histogram counts it.
            scaled = torch.add(slots[:, None].double(), x, alpha=FINE_BINS, out=scratch.get(x.shape, torch.float64))
            bins = scratch.get(x.shape, torch.int64).copy_(scaled)
            counts = torch.bincount(bins.view(-1), minlength=classes * (FINE_BINS + 1)).view(classes, FINE_BINS + 1)
            self.bins[:classes] += counts[:, :FINE_BINS].numpy()
            self.bins[:classes, FINE_BINS - 1] += counts[:, FINE_BINS].numpy()
            torch.from_numpy(self.gap).index_add_(0, codes, x.shape[1] - x.sum(1))
            return
        nan = x.isnan() if math.isnan(low) or math.isnan(high) else None  # aminmax: NaN if any
        if nan is not None:
            x = x.nan_to_num(nan=1.0)  # no distance from 1; its bin is set apart below
            low, high = (float(v) for v in torch.aminmax(x))
        gap = x.shape[1] - x.sum(1) if low >= 0.0 and high <= 1.0 else (1.0 - x).abs_().sum(1)
        # NOTE floor(x * 100) in float64 is the exact bin of a float32 x (24 + 7 bits of
        # product): the counts of np.histogram, in a few passes whatever the classes.
        scaled = torch.mul(x, FINE_BINS, out=scratch.get(x.shape, torch.float64))
        bins = scratch.get(x.shape, torch.int64).copy_(scaled.floor_().clamp_(0, FINE_BINS - 1))
        if nan is not None:
            bins.masked_fill_(nan, FINE_BINS)  # a bin of its own, not counted
        bins += slots[:, None]
        counts = torch.bincount(bins.view(-1), minlength=classes * (FINE_BINS + 1))
        self.bins[:classes] += counts.view(classes, FINE_BINS + 1)[:, :FINE_BINS].numpy()
        torch.from_numpy(self.gap).index_add_(0, codes, gap)

    def trimmed(self, rows: int) -> _Counts:
        """A copy without the rows past ``rows`` (views of these arrays)."""
        out = copy.copy(self)
        out.bins, out.gap = self.bins[:rows], self.gap[:rows]
        return out

    def merge(self, other: _Counts, codes: np.ndarray) -> None:
        k = min(len(codes), len(other.gap))  # as in _Moments.merge
        keep = codes[:k] >= 0
        codes = codes[:k][keep]
        size = int(codes.max(initial=-1)) + 1
        self.bins, self.gap = _grown(self.bins, size), _grown(self.gap, size)
        np.add.at(self.bins, codes, other.bins[:k][keep])
        np.add.at(self.gap, codes, other.gap[:k][keep])

    def of(self, i: int | None) -> tuple[np.ndarray, float]:
        """Fine counts and summed gap of class ``i`` (None: all images)."""
        if i is None:
            return self.bins.sum(0), float(self.gap.sum())
        if i >= len(self.gap):
            return np.zeros(FINE_BINS, np.int64), 0.0
        return self.bins[i], float(self.gap[i])


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


@dataclass(frozen=True)
class NullBand:
    """A layer's class-specificity under label permutations: mean and central interval."""

    mean: float
    low: float
    high: float
    permutations: int


def specificity_null(
    values: np.ndarray, labels: Sequence[str], *, permutations: int = 200, level: float = 0.95, seed: int = 0
) -> NullBand:
    """The class-specificity a layer gets when the labels carry no information: its omega
    squared (averaged over its kept positions, as :meth:`ClassStats.specificity`) for
    ``permutations`` shufflings of ``labels`` over the rows of ``values`` (N, D); their mean
    and central ``level`` interval (NaN with fewer than two classes or no varying position)."""
    return specificity_nulls({"": values}, labels, permutations=permutations, level=level, seed=seed)[""]


def specificity_nulls(
    rows: Mapping[str, torch.Tensor | np.ndarray],
    labels: Sequence[str],
    *,
    permutations: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, NullBand]:
    """:func:`specificity_null` of every layer: ``rows`` maps a layer to its (N, D) per-image
    values (the first summary field), one label per row; each permutation shuffles the
    labels of every layer alike.

    All layers' varying positions are one (N, P) matrix, so a permutation is one
    ``index_add`` of the rows into class sums and a few passes over them: 200 permutations
    of 2,000 images of 1,000 classes over SE-ResNet-50's 15,104 channels take under a
    second on two cores."""
    _, codes = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
    n, k = len(codes), (int(codes.max()) + 1 if len(codes) else 0)
    for raw in rows.values():
        if np.ndim(raw) != 2 or len(raw) != n:
            raise ValueError(f"values must have shape (N, D) with N = {n} labels, got {tuple(np.shape(raw))}")
    # NOTE every layer centred into one float32 matrix (rows for index_add), in place
    full = np.empty((n, sum(np.shape(raw)[1] for raw in rows.values())), np.float32)
    kept = np.zeros(full.shape[1], bool)
    ss_full = np.zeros(full.shape[1])
    spans, begin, start = {}, 0, 0
    for layer, raw in rows.items():
        values = np.array(raw.detach().cpu() if isinstance(raw, torch.Tensor) else raw, dtype=np.float64)  # own copy
        if n:
            values -= values.mean(0)
        end = begin + values.shape[1]
        full[:, begin:end] = values
        ss_full[begin:end] = np.einsum("ij,ij->j", values, values)
        kept[begin:end] = kept_positions(ss_full[begin:end], n)
        count = int(kept[begin:end].sum())
        spans[layer] = (start, start + count)
        begin, start = end, start + count
    x_all = full if kept.all() else full[:, kept]
    ss_total = ss_full[kept]
    nan_band = NullBand(float("nan"), float("nan"), float("nan"), 0)
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

    threads = min(workers(), len(blocks))
    with ThreadPoolExecutor(threads, thread_name_prefix="sevis-null") as pool:
        list(pool.map(score, [blocks[i::threads] for i in range(threads)]))
    tail = (1 - level) / 2
    bands = {}
    for layer, (begin, end) in spans.items():
        if begin == end:
            bands[layer] = nan_band
            continue
        per_permutation = scores[:, begin:end].mean(1)
        low, high = np.quantile(per_permutation, [tail, 1 - tail])
        bands[layer] = NullBand(float(per_permutation.mean()), float(low), float(high), permutations)
    return bands


class _Overall(NamedTuple):
    n: int
    mean: np.ndarray
    m2: np.ndarray


class ClassStats:
    """Per-layer, per-field, per-class moments and value histograms of one attention kind.

    Args:
        fields: the summary fields every layer has, e.g. ``("excitation",)``. Batches may
            carry more (a kind's ``module_fields``); they are kept too, per layer.
        index_name: what one position of a summary vector is (``"channel"``, ``"group"``).
    """

    def __init__(self, fields: Sequence[str], index_name: str = "index") -> None:
        if not fields:
            raise ValueError("fields must name at least one summary field")
        self.fields = tuple(fields)
        self.index_name = index_name
        self._moments: dict[str, dict[str, _Moments]] = {}
        self._counts: dict[str, _Counts] = {}
        self._classes: dict[str, int] = {}  # label -> row in the accumulators, in order seen
        self._scratch = _Scratch()

    def __getstate__(self) -> dict[str, object]:
        state = {k: v for k, v in self.__dict__.items() if k != "_scratch"}  # no work buffers
        # NOTE the accumulators without their spare rows (capacity doubles as classes come):
        # a 1,000-class run's cache is a quarter smaller, and quicker to write and read
        rows = len(self._classes)
        state["_moments"] = {k: {f: m.trimmed(rows) for f, m in v.items()} for k, v in self._moments.items()}
        state["_counts"] = {k: c.trimmed(rows) for k, c in self._counts.items()}
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._scratch = _Scratch()

    def _codes(self, labels: Sequence[str]) -> torch.Tensor:
        codes = [self._classes.setdefault(str(label), len(self._classes)) for label in labels]
        return torch.tensor(codes, dtype=torch.int64)

    def reserve(self, labels: Sequence[str]) -> None:
        """Register the classes of ``labels`` in order of first appearance, as adding their
        images would: the accumulators are then sized once, at the first batch."""
        self._codes(labels)

    def add_layers(self, other: ClassStats) -> None:
        """Take ``other``'s layers, after this one's: statistics of other layers of the same
        images with the same classes in the same order (read apart, e.g. in another thread)."""
        if other.fields != self.fields or other.classes != self.classes:
            raise ValueError("add_layers needs statistics of the same fields and classes, in the same order")
        shared = (self._moments.keys() & other._moments.keys()) | (self._counts.keys() & other._counts.keys())
        if shared:
            raise ValueError(f"both statistics have the layers {sorted(shared)}")
        self._moments.update(other._moments)
        self._counts.update(other._counts)

    def add(
        self,
        summaries: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]],
        labels: Sequence[str],
        histograms: Mapping[str, torch.Tensor | np.ndarray] | None = None,
    ) -> None:
        """Add a batch.

        Args:
            summaries: layer -> field -> (N, D) per-image summary.
            labels: one class label per image.
            histograms: layer -> (N, ...) attention values to count in :data:`BIN_EDGES`
                bins (optional: saved runs of spatial kinds keep no values).
        """
        for layer, per_field in summaries.items():  # checked whole before anything is added
            missing = set(self.fields) - set(per_field)
            if missing:
                raise ValueError(f"summaries[{layer!r}] lacks the fields {sorted(missing)}")
            for name, values in per_field.items():
                if np.ndim(values) != 2 or len(values) != len(labels):
                    raise ValueError(
                        f"summaries[{layer!r}][{name!r}] must have shape (N, D) with N = "
                        f"{len(labels)} labels, got {tuple(np.shape(values))}"
                    )
        if not len(labels):
            return
        codes = self._codes(labels)
        classes = len(self._classes)
        histograms = histograms or {}
        scratch = self._scratch
        # NOTE a layer at a time, each array converted to float64 once (a vectorised copy;
        # torch's mixed-dtype arithmetic is several times slower) into a work buffer, shared
        # where a kind's histogram values are its summary (SE): the accumulators only read it.
        for layer in [*summaries, *(k for k in histograms if k not in summaries)]:
            converted: dict[int, torch.Tensor] = {}
            for name, values in summaries.get(layer, {}).items():
                moments = self._moments.setdefault(layer, {})
                x = _double(values, len(labels), converted, scratch)
                moments.setdefault(name, _Moments(x.shape[1])).add(codes, classes, x, scratch)
            if layer in histograms:
                x = _double(histograms[layer], len(labels), converted, scratch)
                self._counts.setdefault(layer, _Counts()).add(codes, classes, x, scratch)

    @property
    def layers(self) -> list[str]:
        """Layer names in the order first added (depth order)."""
        return list(self._moments)

    @property
    def classes(self) -> list[str]:
        """Class labels in the order first seen (without :data:`ALL`)."""
        return list(self._classes)

    def _row(self, cls: ClassKey) -> int | None:
        if cls is ALL:
            return None
        if cls not in self._classes:
            raise KeyError(f"no class {cls!r}; have {self.classes}")
        return self._classes[cls]

    def count(self, cls: ClassKey = ALL) -> int:
        """Images of class ``cls`` (default all)."""
        if cls is not ALL and cls not in self._classes:
            return 0
        for per_field in self._moments.values():
            return per_field[self.fields[0]].count(self._row(cls))
        return 0

    def _get(self, layer: str, name: str | None) -> _Moments:
        if layer not in self._moments:
            raise KeyError(f"no layer {layer!r}; have {self.layers}")
        name = self.fields[0] if name is None else name
        if name not in self._moments[layer]:
            raise KeyError(f"no field {name!r} in {layer}; have {list(self._moments[layer])}")
        return self._moments[layer][name]

    def mean(self, layer: str, cls: ClassKey = ALL, field: str | None = None) -> np.ndarray:
        """Mean over the class's images of a summary field (default the first), (D,)."""
        return self._get(layer, field).mean(self._row(cls))

    def std(self, layer: str, cls: ClassKey = ALL, field: str | None = None) -> np.ndarray:
        """Sample standard deviation over the class's images, (D,)."""
        return self._get(layer, field).std(self._row(cls))

    def histogram(self, layer: str, cls: ClassKey = ALL) -> np.ndarray:
        """Counts of attention values in :data:`BIN_EDGES` bins, (N_BINS,); zeros where
        no values were given (summaries only)."""
        if layer not in self._counts:
            return np.zeros(N_BINS, np.int64)
        fine, _ = self._counts[layer].of(self._row(cls))
        return fine.reshape(N_BINS, -1).sum(1)

    def has_field(self, layer: str, field: str) -> bool:
        """Whether ``layer`` has the summary ``field`` (runs made before a kind recorded a
        field lack it)."""
        return field in self._moments.get(layer, {})

    def has_histogram(self, layer: str) -> bool:
        """Whether any attention values of ``layer`` were counted."""
        return layer in self._counts and bool(self._counts[layer].bins.any())

    def _classes_of(self, layer: str, field: str | None) -> tuple[np.ndarray, np.ndarray, _Overall]:
        """Counts (k,) and means (k, D) of the classes the layer has images of, and the
        all-images count, mean and sum of squared deviations."""
        moments = self._get(layer, field)
        counts, means = moments.means(len(self._classes))
        seen = counts > 0
        return counts[seen], means[seen], _Overall(moments.count(None), moments.mean(None), moments.m2(None))

    def specificity(self, layer: str, field: str | None = None) -> float:
        """How class-specific the layer is: omega squared (:func:`omega_squared`, the share
        of each position's variance across images that the class explains, corrected for
        chance) averaged over the positions that vary (:func:`kept_positions`).

        About 0 with no class effect, whatever the number and size of classes (compare with
        :func:`specificity_null`); 1 when every image of a class has the same values.
        0 when no position varies at all (the layer does the same whatever the class);
        NaN with fewer than two classes or no within-class degrees of freedom (one image
        per class: see :meth:`small_classes`).
        """
        counts, means, overall = self._classes_of(layer, field)
        if len(counts) < 2 or overall.n - len(counts) < 1:
            return float("nan")
        keep = kept_positions(overall.m2, overall.n)
        if not keep.any():
            return 0.0
        return float(np.mean(omega_squared(counts, means[:, keep], overall.m2[keep])))

    def eta_squared(self, layer: str, field: str | None = None) -> float:
        """Between-class over total sum of squares averaged over the varying positions (eta
        squared). Biased: with no class effect it averages (k - 1) / (N - 1); kept for
        comparison with earlier work, :meth:`specificity` is the measure to cite."""
        counts, means, overall = self._classes_of(layer, field)
        if len(counts) < 2:
            return float("nan")
        keep = kept_positions(overall.m2, overall.n)
        if not keep.any():
            return 0.0
        between = (counts[:, None] * (means[:, keep] - overall.mean[keep]) ** 2).sum(0)
        return float(np.mean(between / overall.m2[keep]))

    def small_classes(self) -> list[str]:
        """Classes with fewer than two images: their spread is undefined, and a run made
        only of them has no class-specificity."""
        return [cls for cls in self.classes if self.count(cls) < 2]

    def mean_of_class_means(self, layer: str, field: str | None = None) -> np.ndarray:
        """Each position's mean over the classes' means, every class weighted equally: the
        SENet paper's reference line (the mean over all images weights classes by size)."""
        _, means, _ = self._classes_of(layer, field)
        return means.mean(0) if len(means) else np.full(self._get(layer, field).dim, np.nan)

    def selectivity(self, layer: str, field: str | None = None) -> np.ndarray:
        """Class selectivity index of each position (Morcos et al., ICLR 2018):
        (mu_max - mu_-max) / (mu_max + mu_-max), mu_max the highest class mean and mu_-max
        the mean of the other classes' means. 0: no class preferred; 1: only one class
        activates it. (D,); NaN with fewer than two classes."""
        _, means, overall = self._classes_of(layer, field)
        if len(means) < 2:
            return np.full(len(overall.mean), np.nan)
        top = means.max(0)
        rest = (means.sum(0) - top) / (len(means) - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (top - rest) / (top + rest)

    def saturation(self, layer: str, cls: ClassKey = ALL) -> dict[str, float]:
        """Of the attention values counted (see :meth:`add`'s ``histograms``): the share at
        or above ``SATURATED_HIGH`` (0.99), at or below ``SATURATED_LOW`` (0.01), and the
        mean distance from 1, |1 - s| (0: the block passes its input unchanged). NaN where
        no values were counted."""
        if layer not in self._counts or (cls is not ALL and cls not in self._classes):
            return {"share_high": float("nan"), "share_low": float("nan"), "mean_gap": float("nan")}
        fine, gap = self._counts[layer].of(self._row(cls))
        count = int(fine.sum())
        if count == 0:
            return {"share_high": float("nan"), "share_low": float("nan"), "mean_gap": float("nan")}
        # FINE_BINS puts edges at SATURATED_LOW and SATURATED_HIGH: the first bin holds the
        # values <= 0.01 (0.01 in float32 is below 0.01), the last those >= 0.99.
        return {"share_high": int(fine[-1]) / count, "share_low": int(fine[0]) / count, "mean_gap": gap / count}

    def merge(self, other: ClassStats) -> None:
        """Add another accumulator's images to this one."""
        if other.fields != self.fields:
            raise ValueError(f"cannot merge statistics of fields {other.fields} into {self.fields}")
        codes = np.array([self._classes.setdefault(label, len(self._classes)) for label in other.classes], np.int64)
        self._merge_codes(other, codes)

    def regroup(self, mapping: Mapping[str, str]) -> ClassStats:
        """These statistics with classes renamed or pooled: class ``c`` goes to ``mapping[c]``,
        classes missing from ``mapping`` are left out. Moments and counts are sums, so pooling
        the images' own classes gives the statistics of the pooled images (to rounding): the
        dashboard renames a class without running the model again."""
        out = copy.copy(self)
        out._moments, out._counts, out._classes, out._scratch = {}, {}, {}, _Scratch()
        codes = np.array(
            [out._classes.setdefault(str(mapping[c]), len(out._classes)) if c in mapping else -1 for c in self.classes],
            np.int64,
        )
        out._merge_codes(self, codes)
        # NOTE a layer whose every class was left out still exists, empty: layers keep depth order
        return out

    def _merge_codes(self, other: ClassStats, codes: np.ndarray) -> None:
        for layer, per_field in other._moments.items():
            for name, moments in per_field.items():
                self._moments.setdefault(layer, {}).setdefault(name, _Moments(moments.dim)).merge(moments, codes)
        for layer, counts in other._counts.items():
            self._counts.setdefault(layer, _Counts()).merge(counts, codes)

    _COLUMNS: ClassVar[Mapping[str, str]] = {}
    """Renames of the generic ``{field}_mean`` / ``{field}_std`` table columns."""

    def to_frame(self) -> pd.DataFrame:
        """Long table: layer, class (empty for all images), index, count, and each
        field's mean and std over the images."""
        frames = []
        keys: list[ClassKey] = [ALL, *self.classes]
        for layer, per_field in self._moments.items():
            first = per_field[self.fields[0]]
            for cls in keys:
                row = self._row(cls)
                if first.count(row) == 0:
                    continue
                columns: dict[str, object] = {
                    "layer": layer,
                    "class": None if cls is ALL else cls,
                    self.index_name: np.arange(first.dim),
                    "count": first.count(row),
                }
                for name, moments in per_field.items():
                    columns[f"{name}_mean"], columns[f"{name}_std"] = moments.mean(row), moments.std(row)
                frames.append(pd.DataFrame(columns))
        names = ["layer", "class", self.index_name, "count"]
        names += [f"{n}_{s}" for n in self.fields for s in ("mean", "std")]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=names)
        return frame.rename(columns=dict(self._COLUMNS))

    def histogram_frame(self) -> pd.DataFrame:
        """Long table: layer, class (empty for all images), bin_start, bin_end, count."""
        keys: list[ClassKey] = [ALL, *self.classes]
        rows = [
            (layer, None if cls is ALL else cls, BIN_EDGES[i], BIN_EDGES[i + 1], int(c))
            for layer, counts in self._counts.items()
            for cls in keys
            if cls is ALL or self._classes[str(cls)] < len(counts.gap)
            for i, c in enumerate(self.histogram(layer, cls))
        ]
        return pd.DataFrame(rows, columns=["layer", "class", "bin_start", "bin_end", "count"])

    def specificity_frame(self) -> pd.DataFrame:
        """One row per layer in depth order: ``specificity`` (omega squared, see
        :meth:`specificity`), ``eta_squared``, ``positions_kept`` of ``positions``, and the
        saturation of all images' values: ``share_high`` (>= 0.99), ``share_low``
        (<= 0.01), ``mean_gap`` (mean |1 - s|)."""
        rows = []
        for layer in self.layers:
            moments = self._get(layer, None)
            rows.append(
                {
                    "layer": layer,
                    "specificity": self.specificity(layer),
                    "eta_squared": self.eta_squared(layer),
                    "positions_kept": int(kept_positions(moments.m2(None), moments.count(None)).sum()),
                    "positions": moments.dim,
                    **self.saturation(layer),
                }
            )
        columns = [
            "layer",
            "specificity",
            "eta_squared",
            "positions_kept",
            "positions",
            "share_high",
            "share_low",
            "mean_gap",
        ]
        return pd.DataFrame(rows, columns=columns)


class ExcitationStats(ClassStats):
    """Per-class statistics of SE excitations: one summary field, the excitation s (C,)."""

    _COLUMNS: ClassVar[Mapping[str, str]] = {"excitation_mean": "mean", "excitation_std": "std"}

    def __init__(self) -> None:
        super().__init__(("excitation",), "channel")

    def update(self, excitations: Mapping[str, torch.Tensor | np.ndarray], labels: Sequence[str]) -> None:
        """Add a batch of excitations ``{layer: (N, C)}`` with one label per image."""
        self.add({k: {"excitation": v} for k, v in excitations.items()}, labels, excitations)


class StatsByKind:
    """For results holding ``stats``, kind name -> :class:`ClassStats`: the SE and SGE
    statistics by name (empty accumulators where the network has none)."""

    stats: dict[str, ClassStats]

    @property
    def se(self) -> ExcitationStats:
        """Per-class statistics of the SE layers."""
        stats = self.stats.get("se")
        return stats if isinstance(stats, ExcitationStats) else ExcitationStats()

    @property
    def sge(self) -> MaskStats:
        """Per-class statistics of the SGE layers."""
        stats = self.stats.get("sge")
        return stats if isinstance(stats, MaskStats) else MaskStats()


def mask_summary(masks: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-group mean and spatial variance (ddof = 0) of SGE masks.

    Args:
        masks: (N, G, H, W).

    Returns:
        ``(mean, variance)``, each (N, G).
    """
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 4:
        raise ValueError(f"masks must have shape (N, G, H, W), got {masks.shape}")
    flat = masks.reshape(*masks.shape[:2], -1)
    # NOTE one pass, accumulated in float64 without a float64 copy of the masks (3x faster
    # than mean and var of a copy); clipped at 0 against rounding where every value is equal.
    count = flat.shape[-1]
    mean = flat.sum(-1, dtype=np.float64) / count
    square = np.einsum("ngp,ngp->ng", flat, flat, dtype=np.float64) / count
    return mean, np.maximum(square - mean * mean, 0.0)


class MaskStats(ClassStats):
    """Per-class statistics of SGE spatial masks, per group: the mean over images of each
    group's mask mean and spatial variance, and a histogram of all mask values. The masks
    themselves are not kept."""

    _COLUMNS: ClassVar[Mapping[str, str]] = {
        "mean_mean": "mask_mean",
        "mean_std": "mask_mean_std",
        "var_mean": "spatial_variance",
        "var_std": "spatial_variance_std",
    }

    def __init__(self) -> None:
        super().__init__(("mean", "var"), "group")

    def update(
        self, masks: Mapping[str, torch.Tensor | np.ndarray], labels: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Add a batch of masks ``{layer: (N, G, H, W)}`` with one label per image.

        Returns:
            The per-image summaries computed on the way, ``(means, variances)``, each
            ``{layer: (N, G)}`` (see :func:`mask_summary`).
        """
        summaries = {layer: mask_summary(values) for layer, values in masks.items()}
        self.add({k: {"mean": m, "var": v} for k, (m, v) in summaries.items()}, labels, masks)
        return {k: m for k, (m, _) in summaries.items()}, {k: v for k, (_, v) in summaries.items()}

    def update_summaries(
        self, means: Mapping[str, np.ndarray], variances: Mapping[str, np.ndarray], labels: Sequence[str]
    ) -> None:
        """Add per-image summaries ``{layer: (N, G)}`` as a saved run keeps them; the
        value histograms need the masks and stay untouched."""
        self.add({k: {"mean": means[k], "var": variances[k]} for k in means}, labels)

    def group_mean(self, layer: str, cls: ClassKey = ALL) -> np.ndarray:
        """Mean over images of each group's mask mean, shape (G,)."""
        return self.mean(layer, cls, "mean")

    def group_variance(self, layer: str, cls: ClassKey = ALL) -> np.ndarray:
        """Mean over images of each group's spatial variance, shape (G,)."""
        return self.mean(layer, cls, "var")


def mean_mask(masks: np.ndarray) -> np.ndarray:
    """The mean of one image's G group masks, (G, H, W) -> (H, W)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (G, H, W), got {masks.shape}")
    return masks.mean(0)


def top_groups(maps: np.ndarray, n: int = 4) -> list[int]:
    """The ``n`` groups whose maps (G, H, W) vary most over the positions, most first."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (G, H, W), got {maps.shape}")
    spread = maps.reshape(len(maps), -1).var(1)
    return [int(g) for g in np.argsort(-spread, kind="stable")[:n]]


def saturation(values: np.ndarray, high: float = SATURATED_HIGH, low: float = SATURATED_LOW) -> dict[str, float]:
    """How saturated a set of gate values is: the share at or above ``high``, at or below
    ``low``, and the mean of ``values`` (any shape)."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "share_high": float(np.mean(values >= high)),
        "share_low": float(np.mean(values <= low)),
    }


def mask_overview(masks: np.ndarray) -> dict[str, float]:
    """One image's masks (G, H, W): their mean value and the mean over groups of each
    mask's spatial variance (ddof = 0)."""
    masks = np.asarray(masks, dtype=np.float64)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (G, H, W), got {masks.shape}")
    return {"mean": float(masks.mean()), "spatial_variance": float(masks.reshape(len(masks), -1).var(1).mean())}


def predicted_labels(logits: torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """Top-1 class name of each row of ``logits`` (N, K)."""
    return [class_names[i] for i in logits.argmax(dim=1).tolist()]
