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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

import numpy as np
import pandas as pd
import torch

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


def _histogram(values: np.ndarray) -> np.ndarray:
    # Right edge included by np.histogram for the last bin, so 1.0 is counted.
    return np.histogram(values.clip(0.0, 1.0), bins=BIN_EDGES)[0].astype(np.int64)


def _groups(labels: list[str]) -> dict[ClassKey, np.ndarray]:
    """Row indices of all images and of each class, classes in order of appearance."""
    array = np.asarray(labels, dtype=object)
    groups: dict[ClassKey, np.ndarray] = {ALL: np.arange(len(labels))}
    for label in dict.fromkeys(labels):
        groups[label] = np.flatnonzero(array == label)
    return groups


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations of (n, D) rows (Chan et al. merging)."""

    dim: int
    n: int = 0
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros(self.dim)

    def add(self, rows: np.ndarray) -> None:
        if len(rows):
            centre = rows.mean(0)
            self.merge(len(rows), centre, ((rows - centre) ** 2).sum(0))

    def merge(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if n == 0:
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * n / total)
        self.n = total

    def std(self) -> np.ndarray:
        """Sample standard deviation (ddof = 1); NaN for fewer than two rows, where it is undefined."""
        return np.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else np.full(self.dim, np.nan)


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


@dataclass
class _Saturation:
    """How many attention values were counted, how many at or above ``SATURATED_HIGH``, at
    or below ``SATURATED_LOW``, and the sum of their distances from 1 (identity)."""

    count: int = 0
    high: int = 0
    low: int = 0
    gap: float = 0.0

    def add(self, values: np.ndarray) -> None:
        self.count += values.size
        self.high += int(np.count_nonzero(values >= SATURATED_HIGH))
        self.low += int(np.count_nonzero(values <= SATURATED_LOW))
        self.gap += float(np.abs(1.0 - values).sum(dtype=np.float64))

    def merge(self, other: _Saturation) -> None:
        self.count += other.count
        self.high += other.high
        self.low += other.low
        self.gap += other.gap


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
    values = _numpy(values)
    if values.ndim != 2 or len(values) != len(labels):
        raise ValueError(f"values must have shape (N, D) with N = {len(labels)} labels, got {values.shape}")
    _, codes = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
    k = int(codes.max()) + 1 if len(codes) else 0
    centred = values - values.mean(0) if len(values) else values
    ss_total = (centred**2).sum(0)
    keep = kept_positions(ss_total, len(values))
    if k < 2 or len(values) - k < 1 or not keep.any():
        return NullBand(float("nan"), float("nan"), float("nan"), 0)
    counts = np.bincount(codes, minlength=k)
    x = centred[:, keep]
    rng = np.random.default_rng(seed)
    scores = np.empty(permutations)
    onehot = np.zeros((len(x), k))
    rows = np.arange(len(x))
    for p in range(permutations):
        onehot[:] = 0.0
        onehot[rows, rng.permutation(codes)] = 1.0
        scores[p] = np.mean(omega_squared(counts, (onehot.T @ x) / counts[:, None], ss_total[keep]))
    tail = (1 - level) / 2
    low, high = np.quantile(scores, [tail, 1 - tail])
    return NullBand(float(scores.mean()), float(low), float(high), permutations)


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
        self._moments: dict[str, dict[str, dict[ClassKey, _Moments]]] = {}
        self._hist: dict[str, dict[ClassKey, np.ndarray]] = {}
        self._saturation: dict[str, dict[ClassKey, _Saturation]] = {}
        self._classes: dict[str, None] = {}  # insertion-ordered set

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
        labels = [str(label) for label in labels]
        groups = _groups(labels)
        for label in labels:
            self._classes.setdefault(label, None)
        for layer, per_field in summaries.items():
            missing = set(self.fields) - set(per_field)
            if missing:
                raise ValueError(f"summaries[{layer!r}] lacks the fields {sorted(missing)}")
            layer_moments = self._moments.setdefault(layer, {})
            for name in per_field:
                values = _numpy(per_field[name])
                if values.ndim != 2 or len(values) != len(labels):
                    raise ValueError(
                        f"summaries[{layer!r}][{name!r}] must have shape (N, D) with N = "
                        f"{len(labels)} labels, got {values.shape}"
                    )
                moments = layer_moments.setdefault(name, {})
                for key, index in groups.items():
                    moments.setdefault(key, _Moments(values.shape[1])).add(values[index])
        for layer, raw in (histograms or {}).items():
            # NOTE in the values' own dtype (no float64 copy of up to a million mask values
            # per image), and counted once per class: the all-images counts are their sums.
            values = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
            values = values.reshape(len(labels), -1)
            hists = self._hist.setdefault(layer, {})
            saturation = self._saturation.setdefault(layer, {})
            every_hist = hists.setdefault(ALL, np.zeros(N_BINS, np.int64))
            every_saturation = saturation.setdefault(ALL, _Saturation())
            for key, index in groups.items():
                if key is ALL:
                    continue
                counts, counted = _histogram(values[index]), _Saturation()
                counted.add(values[index])
                hist = hists.setdefault(key, np.zeros(N_BINS, np.int64))
                hist += counts
                saturation.setdefault(key, _Saturation()).merge(counted)
                every_hist += counts
                every_saturation.merge(counted)

    @property
    def layers(self) -> list[str]:
        """Layer names in the order first added (depth order)."""
        return list(self._moments)

    @property
    def classes(self) -> list[str]:
        """Class labels in the order first seen (without :data:`ALL`)."""
        return list(self._classes)

    def count(self, cls: ClassKey = ALL) -> int:
        """Images of class ``cls`` (default all)."""
        for per_field in self._moments.values():
            moments = per_field[self.fields[0]]
            return moments[cls].n if cls in moments else 0
        return 0

    def _get(self, layer: str, cls: ClassKey, name: str | None) -> _Moments:
        if layer not in self._moments:
            raise KeyError(f"no layer {layer!r}; have {self.layers}")
        name = self.fields[0] if name is None else name
        if name not in self._moments[layer]:
            raise KeyError(f"no field {name!r} in {layer}; have {list(self._moments[layer])}")
        moments = self._moments[layer][name]
        if cls not in moments:
            raise KeyError(f"no class {cls!r}; have {self.classes}")
        return moments[cls]

    def mean(self, layer: str, cls: ClassKey = ALL, field: str | None = None) -> np.ndarray:
        """Mean over the class's images of a summary field (default the first), (D,)."""
        return self._get(layer, cls, field).mean.copy()

    def std(self, layer: str, cls: ClassKey = ALL, field: str | None = None) -> np.ndarray:
        """Sample standard deviation over the class's images, (D,)."""
        return self._get(layer, cls, field).std()

    def histogram(self, layer: str, cls: ClassKey = ALL) -> np.ndarray:
        """Counts of attention values in :data:`BIN_EDGES` bins, (N_BINS,); zeros where
        no values were given (summaries only)."""
        return self._hist.get(layer, {}).get(cls, np.zeros(N_BINS, np.int64)).copy()

    def has_field(self, layer: str, field: str) -> bool:
        """Whether ``layer`` has the summary ``field`` (runs made before a kind recorded a
        field lack it)."""
        return field in self._moments.get(layer, {})

    def has_histogram(self, layer: str) -> bool:
        """Whether any attention values of ``layer`` were counted."""
        return bool(self._hist.get(layer))

    def _classes_of(self, layer: str, field: str | None) -> tuple[np.ndarray, np.ndarray, _Moments]:
        """Counts (k,) and means (k, D) of the classes, and the all-images moments."""
        per_class = [self._get(layer, cls, field) for cls in self.classes]
        counts = np.array([m.n for m in per_class], dtype=np.float64)
        means = np.array([m.mean for m in per_class]).reshape(len(per_class), -1)
        return counts, means, self._get(layer, ALL, field)

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
        return means.mean(0) if len(means) else np.full(self._get(layer, ALL, field).dim, np.nan)

    def selectivity(self, layer: str, field: str | None = None) -> np.ndarray:
        """Class selectivity index of each position (Morcos et al., ICLR 2018):
        (mu_max - mu_-max) / (mu_max + mu_-max), mu_max the highest class mean and mu_-max
        the mean of the other classes' means. 0: no class preferred; 1: only one class
        activates it. (D,); NaN with fewer than two classes."""
        _, means, overall = self._classes_of(layer, field)
        if len(means) < 2:
            return np.full(overall.dim, np.nan)
        top = means.max(0)
        rest = (means.sum(0) - top) / (len(means) - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (top - rest) / (top + rest)

    def saturation(self, layer: str, cls: ClassKey = ALL) -> dict[str, float]:
        """Of the attention values counted (see :meth:`add`'s ``histograms``): the share at
        or above ``SATURATED_HIGH`` (0.99), at or below ``SATURATED_LOW`` (0.01), and the
        mean distance from 1, |1 - s| (0: the block passes its input unchanged). NaN where
        no values were counted."""
        counted = self._saturation.get(layer, {}).get(cls)
        if counted is None or counted.count == 0:
            return {"share_high": float("nan"), "share_low": float("nan"), "mean_gap": float("nan")}
        return {
            "share_high": counted.high / counted.count,
            "share_low": counted.low / counted.count,
            "mean_gap": counted.gap / counted.count,
        }

    def merge(self, other: ClassStats) -> None:
        """Add another accumulator's images to this one."""
        if other.fields != self.fields:
            raise ValueError(f"cannot merge statistics of fields {other.fields} into {self.fields}")
        for label in other.classes:
            self._classes.setdefault(label, None)
        for layer, per_field in other._moments.items():
            for name, per_class in per_field.items():
                for key, m in per_class.items():
                    mine = self._moments.setdefault(layer, {}).setdefault(name, {})
                    mine.setdefault(key, _Moments(m.dim)).merge(m.n, m.mean, m.m2)
        for layer, per_class_hist in other._hist.items():
            for key, counts in per_class_hist.items():
                self._hist.setdefault(layer, {}).setdefault(key, np.zeros(N_BINS, np.int64))
                self._hist[layer][key] += counts
        for layer, per_class_saturation in other._saturation.items():
            for key, counted in per_class_saturation.items():
                self._saturation.setdefault(layer, {}).setdefault(key, _Saturation()).merge(counted)

    _COLUMNS: ClassVar[Mapping[str, str]] = {}
    """Renames of the generic ``{field}_mean`` / ``{field}_std`` table columns."""

    def to_frame(self) -> pd.DataFrame:
        """Long table: layer, class (empty for all images), index, count, and each
        field's mean and std over the images."""
        frames = []
        for layer, per_field in self._moments.items():
            for cls, first in per_field[self.fields[0]].items():
                columns: dict[str, object] = {
                    "layer": layer,
                    "class": None if cls is ALL else cls,
                    self.index_name: np.arange(first.dim),
                    "count": first.n,
                }
                for name, per_class in per_field.items():
                    m = per_class[cls]
                    columns[f"{name}_mean"], columns[f"{name}_std"] = m.mean, m.std()
                frames.append(pd.DataFrame(columns))
        names = ["layer", "class", self.index_name, "count"]
        names += [f"{n}_{s}" for n in self.fields for s in ("mean", "std")]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=names)
        return frame.rename(columns=dict(self._COLUMNS))

    def histogram_frame(self) -> pd.DataFrame:
        """Long table: layer, class (empty for all images), bin_start, bin_end, count."""
        rows = [
            (layer, None if cls is ALL else cls, BIN_EDGES[i], BIN_EDGES[i + 1], int(c))
            for layer, per_class in self._hist.items()
            for cls, hist in per_class.items()
            for i, c in enumerate(hist)
        ]
        return pd.DataFrame(rows, columns=["layer", "class", "bin_start", "bin_end", "count"])

    def specificity_frame(self) -> pd.DataFrame:
        """One row per layer in depth order: ``specificity`` (omega squared, see
        :meth:`specificity`), ``eta_squared``, ``positions_kept`` of ``positions``, and the
        saturation of all images' values: ``share_high`` (>= 0.99), ``share_low``
        (<= 0.01), ``mean_gap`` (mean |1 - s|)."""
        rows = []
        for layer in self.layers:
            overall = self._get(layer, ALL, None)
            rows.append(
                {
                    "layer": layer,
                    "specificity": self.specificity(layer),
                    "eta_squared": self.eta_squared(layer),
                    "positions_kept": int(kept_positions(overall.m2, overall.n).sum()),
                    "positions": overall.dim,
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


def specificity_nulls(
    rows: Mapping[str, np.ndarray], labels: Sequence[str], *, permutations: int = 200, seed: int = 0
) -> dict[str, NullBand]:
    """:func:`specificity_null` of every layer: ``rows`` maps a layer to its (N, D) per-image
    values (the first summary field), one label per row."""
    return {
        layer: specificity_null(values, labels, permutations=permutations, seed=seed) for layer, values in rows.items()
    }


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
