"""Per-class statistics of captured attention, accumulated batch by batch.

The SENet paper's "Role of Excitation" analysis (arXiv:1709.01507, TPAMI Figures 6
and 7) plots, per SE layer, each channel's mean excitation over the images of a class
(one line per class, plus all images) and the standard deviation across instances.
:class:`ExcitationStats` holds exactly that, plus histograms on fixed bins in [0, 1]
and a class-specificity score per layer. :class:`MaskStats` does the same for SGE's
spatial masks (arXiv:1905.09646), per group. Memory is bounded by layers x classes x
channels, whatever the number of images.

Conventions: standard deviations across images are sample ones (ddof = 1, zero for a
single image); a mask's spatial variance is over its H x W positions (ddof = 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

__all__ = [
    "ALL",
    "BIN_EDGES",
    "ExcitationStats",
    "MaskStats",
    "mask_summary",
    "predicted_labels",
]

ALL = "all images"
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


def _groups(labels: list[str]) -> dict[str, np.ndarray]:
    """Row indices of all images and of each class, classes in order of appearance."""
    array = np.asarray(labels, dtype=object)
    groups = {ALL: np.arange(len(labels))}
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
        self.merge(len(rows), rows.mean(0), ((rows - rows.mean(0)) ** 2).sum(0))

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


class ExcitationStats:
    """Per-layer, per-class moments and histograms of SE excitations.

    Feed it batches with :meth:`update`: excitations ``{layer: (N, C)}`` and one label
    per image. Everything is also kept for all images together under :data:`ALL`.
    """

    def __init__(self) -> None:
        self._moments: dict[str, dict[str, _Moments]] = {}
        self._hist: dict[str, dict[str, np.ndarray]] = {}
        self._classes: dict[str, None] = {}  # insertion-ordered set

    def update(
        self,
        excitations: Mapping[str, torch.Tensor | np.ndarray],
        labels: Sequence[str],
    ) -> None:
        labels = [str(label) for label in labels]
        for label in labels:
            self._classes.setdefault(label, None)
        for layer, values in excitations.items():
            values = _numpy(values)
            if values.ndim != 2 or len(values) != len(labels):
                raise ValueError(
                    f"excitations[{layer!r}] must have shape (N, C) with N = {len(labels)} "
                    f"labels, got {values.shape}"
                )
            moments = self._moments.setdefault(layer, {})
            hists = self._hist.setdefault(layer, {})
            for key, index in _groups(labels).items():
                rows = values[index]
                moments.setdefault(key, _Moments(values.shape[1])).add(rows)
                hist = hists.setdefault(key, np.zeros(N_BINS, np.int64))
                hist += _histogram(rows)

    @property
    def layers(self) -> list[str]:
        return list(self._moments)

    @property
    def classes(self) -> list[str]:
        """Class labels in the order first seen (without :data:`ALL`)."""
        return list(self._classes)

    def count(self, cls: str = ALL) -> int:
        first = next(iter(self._moments.values()), {})
        return first[cls].n if cls in first else 0

    def _get(self, layer: str, cls: str) -> _Moments:
        if layer not in self._moments:
            raise KeyError(f"no layer {layer!r}; have {self.layers}")
        if cls not in self._moments[layer]:
            raise KeyError(f"no class {cls!r}; have {self.classes}")
        return self._moments[layer][cls]

    def mean(self, layer: str, cls: str = ALL) -> np.ndarray:
        """Mean excitation of each channel, shape (C,)."""
        return self._get(layer, cls).mean.copy()

    def std(self, layer: str, cls: str = ALL) -> np.ndarray:
        """Sample standard deviation of each channel across images, shape (C,)."""
        return self._get(layer, cls).std()

    def histogram(self, layer: str, cls: str = ALL) -> np.ndarray:
        """Counts of excitation values in :data:`BIN_EDGES` bins, shape (N_BINS,)."""
        self._get(layer, cls)
        return self._hist[layer][cls].copy()

    def specificity(self, layer: str) -> float:
        """Share of each channel's variance across images that the class explains
        (between-class over total sum of squares, eta squared), averaged over channels.

        0: the layer excites channels the same way whatever the class; 1: each class
        has its own fixed pattern. NaN with fewer than two classes.
        """
        per_class = [self._get(layer, cls) for cls in self.classes]
        if len(per_class) < 2:
            return float("nan")
        overall = self._get(layer, ALL)
        between = sum(m.n * (m.mean - overall.mean) ** 2 for m in per_class)
        total = overall.m2
        varying = total > 1e-12
        if not varying.any():
            return float("nan")
        return float(np.mean(between[varying] / total[varying]))

    def merge(self, other: ExcitationStats) -> None:
        """Add another accumulator's images to this one."""
        for cls in other.classes:
            self._classes.setdefault(cls, None)
        for layer, per_class in other._moments.items():
            for cls, m in per_class.items():
                mine = self._moments.setdefault(layer, {}).setdefault(cls, _Moments(m.dim))
                mine.merge(m.n, m.mean, m.m2)
                hist = self._hist.setdefault(layer, {}).setdefault(cls, np.zeros(N_BINS, np.int64))
                hist += other._hist[layer][cls]

    def to_frame(self) -> pd.DataFrame:
        """Long table: layer, class, channel, count, mean, std."""
        frames = []
        for layer, per_class in self._moments.items():
            for cls, m in per_class.items():
                frames.append(
                    pd.DataFrame(
                        {
                            "layer": layer,
                            "class": cls,
                            "channel": np.arange(m.dim),
                            "count": m.n,
                            "mean": m.mean,
                            "std": m.std(),
                        }
                    )
                )
        columns = ["layer", "class", "channel", "count", "mean", "std"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def histogram_frame(self) -> pd.DataFrame:
        """Long table: layer, class, bin_start, bin_end, count."""
        rows = [
            (layer, cls, BIN_EDGES[i], BIN_EDGES[i + 1], int(c))
            for layer, per_class in self._hist.items()
            for cls, hist in per_class.items()
            for i, c in enumerate(hist)
        ]
        return pd.DataFrame(rows, columns=["layer", "class", "bin_start", "bin_end", "count"])

    def specificity_frame(self) -> pd.DataFrame:
        """Table: layer, specificity, in depth order."""
        return pd.DataFrame(
            {"layer": self.layers, "specificity": [self.specificity(k) for k in self.layers]}
        )


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


class MaskStats:
    """Per-layer, per-class statistics of SGE spatial masks, per group.

    Keeps, for each (layer, class): the number of images, the mean over images of each
    group's mask mean and spatial variance, and a histogram of all mask values. The
    masks themselves are not kept.
    """

    def __init__(self) -> None:
        self._mean: dict[str, dict[str, _Moments]] = {}
        self._var: dict[str, dict[str, _Moments]] = {}
        self._hist: dict[str, dict[str, np.ndarray]] = {}
        self._classes: dict[str, None] = {}

    def update(
        self, masks: Mapping[str, torch.Tensor | np.ndarray], labels: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Add a batch of masks ``{layer: (N, G, H, W)}`` with one label per image.

        Returns:
            The per-image summaries it computed on the way, ``(means, variances)``, each
            ``{layer: (N, G)}`` (see :func:`mask_summary`), so callers need not redo them.
        """
        labels = [str(label) for label in labels]
        means, variances = {}, {}
        for layer, values in masks.items():
            values = _numpy(values)
            if values.ndim != 4 or len(values) != len(labels):
                raise ValueError(
                    f"masks[{layer!r}] must have shape (N, G, H, W) with N = {len(labels)} "
                    f"labels, got {values.shape}"
                )
            means[layer], variances[layer] = mask_summary(values)
            for key, index in _groups(labels).items():
                hist = self._hist.setdefault(layer, {}).setdefault(key, np.zeros(N_BINS, np.int64))
                hist += _histogram(values[index])
        self.update_summaries(means, variances, labels)
        return means, variances

    def update_summaries(
        self,
        means: Mapping[str, np.ndarray],
        variances: Mapping[str, np.ndarray],
        labels: Sequence[str],
    ) -> None:
        """Add per-image summaries ``{layer: (N, G)}`` (see :func:`mask_summary`), as a
        saved run keeps them; the value histograms need the masks and stay untouched."""
        labels = [str(label) for label in labels]
        for label in labels:
            self._classes.setdefault(label, None)
        for layer in means:
            mean, var = _numpy(means[layer]), _numpy(variances[layer])
            for key, index in _groups(labels).items():
                self._mean.setdefault(layer, {}).setdefault(key, _Moments(mean.shape[1])).add(mean[index])
                self._var.setdefault(layer, {}).setdefault(key, _Moments(var.shape[1])).add(var[index])

    @property
    def layers(self) -> list[str]:
        return list(self._mean)

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    def count(self, cls: str = ALL) -> int:
        first = next(iter(self._mean.values()), {})
        return first[cls].n if cls in first else 0

    def group_mean(self, layer: str, cls: str = ALL) -> np.ndarray:
        """Mean over images of each group's mask mean, shape (G,)."""
        return self._mean[layer][cls].mean.copy()

    def group_variance(self, layer: str, cls: str = ALL) -> np.ndarray:
        """Mean over images of each group's spatial variance, shape (G,)."""
        return self._var[layer][cls].mean.copy()

    def histogram(self, layer: str, cls: str = ALL) -> np.ndarray:
        """Counts of all mask values in :data:`BIN_EDGES` bins, shape (N_BINS,); zeros
        for images added as summaries only."""
        return self._hist.get(layer, {}).get(cls, np.zeros(N_BINS, np.int64)).copy()

    def to_frame(self) -> pd.DataFrame:
        """Long table: layer, class, group, count, mask_mean, spatial_variance."""
        frames = [
            pd.DataFrame(
                {
                    "layer": layer,
                    "class": cls,
                    "group": np.arange(m.dim),
                    "count": m.n,
                    "mask_mean": m.mean,
                    "spatial_variance": self._var[layer][cls].mean,
                }
            )
            for layer, per_class in self._mean.items()
            for cls, m in per_class.items()
        ]
        columns = ["layer", "class", "group", "count", "mask_mean", "spatial_variance"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def predicted_labels(logits: torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """Top-1 class name of each row of ``logits`` (N, K)."""
    return [class_names[i] for i in logits.argmax(dim=1).tolist()]
