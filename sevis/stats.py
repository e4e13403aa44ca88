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

Conventions: standard deviations across images are sample ones (ddof = 1, zero for a
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
    "ClassKey",
    "ClassStats",
    "ExcitationStats",
    "MaskStats",
    "StatsByKind",
    "mask_overview",
    "mask_summary",
    "mean_mask",
    "predicted_labels",
    "saturation",
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
        return np.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else np.zeros(self.dim)


class ClassStats:
    """Per-layer, per-field, per-class moments and value histograms of one attention kind.

    Args:
        fields: the summary fields every layer has, e.g. ``("excitation",)``.
        index_name: what one position of a summary vector is (``"channel"``, ``"group"``).
    """

    def __init__(self, fields: Sequence[str], index_name: str = "index") -> None:
        if not fields:
            raise ValueError("fields must name at least one summary field")
        self.fields = tuple(fields)
        self.index_name = index_name
        self._moments: dict[str, dict[str, dict[ClassKey, _Moments]]] = {}
        self._hist: dict[str, dict[ClassKey, np.ndarray]] = {}
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
            for name in self.fields:
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
            values = _numpy(raw).reshape(len(labels), -1)
            hists = self._hist.setdefault(layer, {})
            for key, index in groups.items():
                hist = hists.setdefault(key, np.zeros(N_BINS, np.int64))
                hist += _histogram(values[index])

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
        if name not in self.fields:
            raise KeyError(f"no field {name!r}; have {list(self.fields)}")
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

    def has_histogram(self, layer: str) -> bool:
        """Whether any attention values of ``layer`` were counted."""
        return bool(self._hist.get(layer))

    def specificity(self, layer: str, field: str | None = None) -> float:
        """Share of each position's variance across images that the class explains
        (between-class over total sum of squares, eta squared), averaged over positions.

        0: the layer attends the same way whatever the class. NaN with fewer than two
        classes or no variation at all.
        """
        per_class = [self._get(layer, cls, field) for cls in self.classes]
        if len(per_class) < 2:
            return float("nan")
        overall = self._get(layer, ALL, field)
        between = sum(m.n * (m.mean - overall.mean) ** 2 for m in per_class)
        total = overall.m2
        varying = total > 1e-12
        if not varying.any():
            return float("nan")
        return float(np.mean(between[varying] / total[varying]))

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
                for name in self.fields:
                    m = per_field[name][cls]
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
        """Table: layer, specificity, in depth order."""
        return pd.DataFrame({"layer": self.layers, "specificity": [self.specificity(k) for k in self.layers]})


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
    masks = _numpy(masks)
    if masks.ndim != 4:
        raise ValueError(f"masks must have shape (N, G, H, W), got {masks.shape}")
    flat = masks.reshape(*masks.shape[:2], -1)
    return flat.mean(-1), flat.var(-1)


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


def saturation(values: np.ndarray, high: float = 0.99, low: float = 0.01) -> dict[str, float]:
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
