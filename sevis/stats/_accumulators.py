"""Accumulators that merge batch by batch: moments (Chan et al.) and counts in fixed bins over [0, 1]."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch

__all__ = ["BIN_EDGES", "FINE_BINS", "is_narrow"]


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


FINE_EDGES = np.linspace(0.0, 1.0, FINE_BINS + 1)
"""The fine bins' edges in float64; every other one is an edge of :data:`BIN_EDGES`, equal
bit for bit (k x 0.01 and (k / 2) x 0.02 round alike: 0.02 is 2 x 0.01 exactly)."""


def is_narrow(values: torch.Tensor | np.ndarray) -> bool:
    """Whether ``values`` are float32 or narrower (or integers, or booleans): their bins
    come from ``floor(100 x)``, exact for them. Wider floats (float64) are binned against
    the edges themselves."""
    dtype = values.dtype
    if isinstance(dtype, torch.dtype):
        return not dtype.is_floating_point or dtype.itemsize <= 4
    return np.dtype(dtype).kind in "biu" or np.dtype(dtype).itemsize <= 4


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
    outside clipped, NaN not counted), the values equal to the first inner edge (0.01: they
    belong to the second bin, and are at or below ``SATURATED_LOW``), and the sum of their
    distances from 1."""

    def __init__(self) -> None:
        self.bins = np.zeros((0, FINE_BINS), np.int64)
        self.at_low = np.zeros(0, np.int64)
        self.gap = np.zeros(0)

    def add(
        self, codes: torch.Tensor, classes: int, values: torch.Tensor, scratch: _Scratch, *, narrow: bool = True
    ) -> None:
        """Count rows ``values`` (N, ...), float64, of classes ``codes`` (N,); ``values`` are
        only read. ``narrow``: they were float32 or narrower before conversion (see
        :func:`is_narrow`); otherwise each is placed by comparison with the edges."""
        self.bins, self.gap = _grown(self.bins, classes), _grown(self.gap, classes)
        self.at_low = _grown(self.at_low, classes)
        x = values.reshape(len(codes), -1)
        low, high = (float(v) for v in torch.aminmax(x))
        slots = torch.mul(codes, FINE_BINS + 1)  # each class's FINE_BINS + 1 slots: bins, then 1.0 or NaN
        if narrow and low >= 0.0 and high <= 1.0 and classes * (FINE_BINS + 1) < 2**24:
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
        if narrow:
            # NOTE floor(x * 100) in float64 is the exact bin of a float32 x (24 + 7 bits of
            # product): the counts of np.histogram, in a few passes whatever the classes.
            scaled = torch.mul(x, FINE_BINS, out=scratch.get(x.shape, torch.float64))
            bins = scratch.get(x.shape, torch.int64).copy_(scaled.floor_().clamp_(0, FINE_BINS - 1))
        else:
            # NOTE not for float64: 0.58 x 100 is 57.99999..., a bin low. Each value goes to
            # the last edge at or below it, as np.histogram places it (1.0: the last bin).
            bins = torch.bucketize(x, torch.from_numpy(FINE_EDGES), right=True, out_int32=False)
            bins.sub_(1).clamp_(0, FINE_BINS - 1)
            torch.from_numpy(self.at_low).index_add_(0, codes, (x == float(FINE_EDGES[1])).sum(1))
        if nan is not None:
            bins.masked_fill_(nan, FINE_BINS)  # a bin of its own, not counted
        self._count(codes, classes, bins, slots, gap)

    def _count(
        self, codes: torch.Tensor, classes: int, bins: torch.Tensor, slots: torch.Tensor, gap: torch.Tensor
    ) -> None:
        """Add each class's counts of ``bins`` (N, M) fine bins (FINE_BINS: not counted), and its ``gap``."""
        bins += slots[:, None]
        counts = torch.bincount(bins.view(-1), minlength=classes * (FINE_BINS + 1))
        self.bins[:classes] += counts.view(classes, FINE_BINS + 1)[:, :FINE_BINS].numpy()
        torch.from_numpy(self.gap).index_add_(0, codes, gap)

    def trimmed(self, rows: int) -> _Counts:
        """A copy without the rows past ``rows`` (views of these arrays)."""
        out = copy.copy(self)
        out.bins, out.at_low, out.gap = self.bins[:rows], self.at_low[:rows], self.gap[:rows]
        return out

    def merge(self, other: _Counts, codes: np.ndarray) -> None:
        k = min(len(codes), len(other.gap))  # as in _Moments.merge
        keep = codes[:k] >= 0
        codes = codes[:k][keep]
        size = int(codes.max(initial=-1)) + 1
        self.bins, self.gap = _grown(self.bins, size), _grown(self.gap, size)
        self.at_low = _grown(self.at_low, size)
        np.add.at(self.bins, codes, other.bins[:k][keep])
        np.add.at(self.at_low, codes, other.at_low[:k][keep])
        np.add.at(self.gap, codes, other.gap[:k][keep])

    def of(self, i: int | None) -> tuple[np.ndarray, int, float]:
        """Fine counts, values equal to 0.01 and summed gap of class ``i`` (None: all images)."""
        if i is None:
            return self.bins.sum(0), int(self.at_low.sum()), float(self.gap.sum())
        if i >= len(self.gap):
            return np.zeros(FINE_BINS, np.int64), 0, 0.0
        return self.bins[i], int(self.at_low[i]), float(self.gap[i])
