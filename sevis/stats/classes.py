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
import threading
from collections.abc import Mapping, Sequence
from typing import ClassVar, Final, NamedTuple

import numpy as np
import pandas as pd
import torch

from ._accumulators import BIN_EDGES, FINE_BINS, N_BINS, _Counts, _double, _Moments, _Scratch, is_narrow
from .measures import kept_positions, omega_squared

__all__ = ["ALL", "ClassKey", "ClassStats", "count_distribution"]


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
        # (layer, when) -> counts whose row c * P + p is class c's position p (P positions)
        self._distributions: dict[tuple[str, str], _Counts] = {}
        # (layer, when) -> (P, FINE_BINS) counts over all images, not by class (a saved run's)
        self._pooled: dict[tuple[str, str], np.ndarray] = {}
        self._positions: dict[str, int] = {}
        self._classes: dict[str, int] = {}  # label -> row in the accumulators, in order seen
        self._scratch = _Scratch()

    def __getstate__(self) -> dict[str, object]:
        state = {k: v for k, v in self.__dict__.items() if k != "_scratch"}  # no work buffers
        # NOTE the accumulators without their spare rows (capacity doubles as classes come):
        # a 1,000-class run's cache is a quarter smaller, and quicker to write and read
        rows = len(self._classes)
        state["_moments"] = {k: {f: m.trimmed(rows) for f, m in v.items()} for k, v in self._moments.items()}
        state["_counts"] = {k: c.trimmed(rows) for k, c in self._counts.items()}
        state["_distributions"] = {k: c.trimmed(rows * self._positions[k[0]]) for k, c in self._distributions.items()}
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update({"_distributions": {}, "_pooled": {}, "_positions": {}, **state})
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
        self._distributions.update(other._distributions)
        self._pooled.update(other._pooled)
        self._positions.update(other._positions)

    def add(
        self,
        summaries: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]],
        labels: Sequence[str],
        histograms: Mapping[str, torch.Tensor | np.ndarray] | None = None,
        distributions: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]] | None = None,
    ) -> None:
        """Add a batch.

        Args:
            summaries: layer -> field -> (N, D) per-image summary.
            labels: one class label per image.
            histograms: layer -> (N, ...) attention values to count in :data:`BIN_EDGES`
                bins (optional: saved runs of spatial kinds keep no values).
            distributions: layer -> name -> (N, P, M) values in [0, 1], M of them for each
                of P positions (SGE: each group's normalised feature norms before and after
                SGE), counted per class and position in :data:`BIN_EDGES` bins
                (:meth:`distribution`).
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
                counts = self._counts.setdefault(layer, _Counts())
                counts.add(codes, classes, x, scratch, narrow=is_narrow(histograms[layer]))
        for layer, named in (distributions or {}).items():
            for name, values in named.items():
                self._add_distribution(layer, name, codes, classes, values)

    def _add_distribution(
        self, layer: str, name: str, codes: torch.Tensor, classes: int, values: torch.Tensor | np.ndarray
    ) -> None:
        """Count (N, P, M) values per class and position: row c * P + p of the counts."""
        given = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
        if given.ndim != 3 or len(given) != len(codes):
            raise ValueError(f"distributions[{layer!r}][{name!r}] must be (N, P, M), got {tuple(given.shape)}")
        positions = int(given.shape[1])
        if self._positions.setdefault(layer, positions) != positions:
            raise ValueError(f"{layer} has {self._positions[layer]} positions; got {positions}")
        rows = (codes[:, None] * positions + torch.arange(positions)).reshape(-1)
        x = given.detach().cpu().reshape(len(rows), -1).double()
        counts = self._distributions.setdefault((layer, name), _Counts())
        counts.add(rows, classes * positions, x, self._scratch, narrow=is_narrow(given))

    def set_distribution(self, layer: str, name: str, counts: np.ndarray) -> None:
        """Set ``layer``'s ``name`` distribution over all images (not by class) from counts
        (P, 100) of :func:`count_distribution` (a saved run keeps these): :meth:`distribution`
        then answers for all images only.

        Raises:
            ValueError: counts of another shape, or the layer's distributions are counted
                by class already.
        """
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[1] != FINE_BINS or counts.dtype.kind not in "iu":
            raise ValueError(f"counts must be (P, {FINE_BINS}) integers, got {counts.shape} {counts.dtype}")
        if (layer, name) in self._distributions:
            raise ValueError(f"{layer}'s {name!r} distribution is counted by class already")
        if self._positions.setdefault(layer, len(counts)) != len(counts):
            raise ValueError(f"{layer} has {self._positions[layer]} positions; got {len(counts)}")
        self._pooled[(layer, name)] = counts.astype(np.int64)

    def distribution(self, layer: str, name: str, cls: ClassKey = ALL, position: int | None = None) -> np.ndarray:
        """Counts of a layer's ``name`` distribution (see :meth:`add`) in :data:`BIN_EDGES`
        bins, (N_BINS,): of one position (a group) or all, one class or all images; zeros
        where none were counted.

        Raises:
            ValueError: a class asked of a distribution kept over all images only
                (:meth:`distributions_by_class`).
        """
        pooled = self._pooled.get((layer, name))
        if pooled is not None:
            if cls is not ALL:
                raise ValueError(f"{layer}'s distributions are kept over all images, not by class")
            fine = pooled.sum(0) if position is None else pooled[position]
            return fine.reshape(N_BINS, -1).sum(1)
        counts = self._distributions.get((layer, name))
        if counts is None:
            return np.zeros(N_BINS, np.int64)
        positions = self._positions[layer]
        k = len(counts.bins) // positions
        fine = counts.bins[: k * positions].reshape(k, positions, -1)
        if cls is not ALL:
            row = self._row(cls)
            assert row is not None
            fine = fine[row : row + 1]
        fine = fine.sum(0)
        fine = fine.sum(0) if position is None else fine[position]
        return fine.reshape(N_BINS, -1).sum(1)

    def distribution_frame(self, layer: str) -> pd.DataFrame:
        """Long table of ``layer``'s distributions over all images: name, position (as
        ``index_name``), bin_start, bin_end, count."""
        rows = [
            (layer, name, position, BIN_EDGES[i], BIN_EDGES[i + 1], int(c))
            for name in self.distributions(layer)
            for position in range(self._positions[layer])
            for i, c in enumerate(self.distribution(layer, name, ALL, position))
        ]
        return pd.DataFrame(rows, columns=["layer", "distribution", self.index_name, "bin_start", "bin_end", "count"])

    def distributions(self, layer: str) -> list[str]:
        """The names of ``layer``'s distributions (none where only summaries were added, as
        from a saved run made without them)."""
        return [name for (k, name) in [*self._distributions, *self._pooled] if k == layer]

    def distributions_by_class(self, layer: str) -> bool:
        """Whether ``layer``'s distributions are counted by class (images analysed here), not
        over all images only (a saved run's, :meth:`set_distribution`)."""
        return any(k == layer for (k, _) in self._distributions)

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
        fine, _, _ = self._counts[layer].of(self._row(cls))
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
        fine, at_low, gap = self._counts[layer].of(self._row(cls))
        count = int(fine.sum())
        if count == 0:
            return {"share_high": float("nan"), "share_low": float("nan"), "mean_gap": float("nan")}
        # FINE_BINS puts edges at SATURATED_LOW and SATURATED_HIGH: the first bin holds the
        # values < 0.01, and those equal to 0.01 (float64 input only: 0.01 in float32 is
        # below it) are counted apart; the last bin holds those >= 0.99.
        low = int(fine[0]) + at_low
        return {"share_high": int(fine[-1]) / count, "share_low": low / count, "mean_gap": gap / count}

    def merge(self, other: ClassStats) -> None:
        """Add another accumulator's images to this one."""
        if other.fields != self.fields:
            raise ValueError(f"cannot merge statistics of fields {other.fields} into {self.fields}")
        empty = not self._classes
        codes = np.array([self._classes.setdefault(label, len(self._classes)) for label in other.classes], np.int64)
        self._merge_codes(other, codes)
        # all-images counts of both parts add up; of one part only, they describe neither
        if empty:
            self._pooled = dict(other._pooled)
        elif other._classes:
            self._pooled = {k: v + other._pooled[k] for k, v in self._pooled.items() if k in other._pooled}

    def regroup(self, mapping: Mapping[str, str]) -> ClassStats:
        """These statistics with classes renamed or pooled: class ``c`` goes to ``mapping[c]``,
        classes missing from ``mapping`` are left out. Moments and counts are sums, so pooling
        the images' own classes gives the statistics of the pooled images (to rounding): the
        dashboard renames a class without running the model again."""
        out = copy.copy(self)
        out._moments, out._counts, out._classes, out._scratch = {}, {}, {}, _Scratch()
        out._distributions, out._positions = {}, dict(self._positions)
        codes = np.array(
            [out._classes.setdefault(str(mapping[c]), len(out._classes)) if c in mapping else -1 for c in self.classes],
            np.int64,
        )
        out._merge_codes(self, codes)
        # all-images counts stay all-images counts only while every class is kept
        out._pooled = dict(self._pooled) if all(c in mapping for c in self.classes) else {}
        # NOTE a layer whose every class was left out still exists, empty: layers keep depth order
        return out

    def _merge_codes(self, other: ClassStats, codes: np.ndarray) -> None:
        for layer, per_field in other._moments.items():
            for name, moments in per_field.items():
                self._moments.setdefault(layer, {}).setdefault(name, _Moments(moments.dim)).merge(moments, codes)
        for layer, counts in other._counts.items():
            self._counts.setdefault(layer, _Counts()).merge(counts, codes)
        for (layer, name), counts in other._distributions.items():
            positions = self._positions.setdefault(layer, other._positions[layer])
            offsets = np.arange(positions)
            rows = np.where(codes[:, None] >= 0, codes[:, None] * positions + offsets, -1).reshape(-1)
            self._distributions.setdefault((layer, name), _Counts()).merge(counts, rows)

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


def count_distribution(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Counts of (N, P, M) values in [0, 1], M of them for each of P positions, over the N
    images: (P, 100) in the fine bins two of which make one :data:`BIN_EDGES` bin, as
    :meth:`ClassStats.add` counts ``distributions`` (what a saved run keeps of them:
    :meth:`ClassStats.set_distribution` takes these counts back)."""
    given = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    if given.ndim != 3:
        raise ValueError(f"values must be (N, P, M), got {tuple(given.shape)}")
    n, positions = int(given.shape[0]), int(given.shape[1])
    # NOTE one work buffer set per thread, kept between calls: an extract counts the same
    # shapes every batch, and fresh buffers doubled the counting time (0.067 s against
    # 0.035 s for a batch of 32 at stage 2)
    scratch = _THREAD.__dict__.setdefault("scratch", _Scratch())
    flat = given.detach().cpu().reshape(n * positions, -1)
    x = scratch.get(tuple(flat.shape), torch.float64, 1).copy_(flat)
    counts = _Counts()
    counts.add(torch.arange(positions).repeat(n), positions, x, scratch, narrow=is_narrow(given))
    return counts.bins[:positions].copy()


_THREAD = threading.local()
