"""SGE's per-class statistics and summaries of spatial masks: each group's mask mean and spatial variance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch

from .classes import ALL, ClassKey, ClassStats

__all__ = ["MaskStats", "mask_overview", "mask_summary", "mean_mask", "top_groups"]


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

    def __init__(self, index_name: str = "group") -> None:
        super().__init__(("mean", "var"), index_name)

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


def mask_overview(masks: np.ndarray) -> dict[str, float]:
    """One image's masks (G, H, W): their mean value and the mean over groups of each
    mask's spatial variance (ddof = 0)."""
    masks = np.asarray(masks, dtype=np.float64)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (G, H, W), got {masks.shape}")
    return {"mean": float(masks.mean()), "spatial_variance": float(masks.reshape(len(masks), -1).var(1).mean())}
