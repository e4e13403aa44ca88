"""One path for a batch of images: decode, preprocess, hooked forward, top-k, summaries.

:func:`sevis.analyse` (the dashboard and notebooks), ``sevis extract`` and its Ray
engine all run their images through :func:`sevis.data.images.load_view` and :func:`forward_batch`, so a
value means the same thing wherever it is shown or saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..attention.kinds import get_kind
from ..data.images import normalise
from ..models.registry import model_info
from ..stats.classes import ClassStats, count_distribution
from .capturing import capture

__all__ = ["TOP_K", "BatchResult", "forward_batch"]

TOP_K = 5
"""Predictions kept per image."""


@dataclass
class BatchResult:
    """What one forward pass of N images gave.

    Attributes:
        top_classes: per image, the ``TOP_K`` most probable class names, best first.
        top_probs: their softmax probabilities, (N, TOP_K) float32.
        kinds: layer -> its kind's name, in depth order.
        values: layer -> the captured values, one row per image (SE (N, C), SGE
            (N, G, H, W)), float32.
        summaries: layer -> field -> (N, D): what statistics and saved runs keep.
        extras: layer -> name -> what the kind records from the whole module (SGE: each
            group's feature norm before and after it, (N, G, H, W)).
    """

    top_classes: list[list[str]]
    top_probs: np.ndarray
    kinds: dict[str, str]
    values: dict[str, np.ndarray]
    summaries: dict[str, dict[str, np.ndarray]]
    extras: dict[str, dict[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self.top_classes)

    @property
    def predicted(self) -> list[str]:
        """Each image's top-1 class name."""
        return [row[0] for row in self.top_classes]

    def accumulate(self, stats: dict[str, ClassStats], labels: Sequence[str], *, distributions: bool = False) -> None:
        """Add this batch to per-kind statistics (kind name -> accumulator, created as
        needed), one label per image; with ``distributions``, each kind's distributions per
        position too (SGE's before and after, about 1.6 MB of counts per class)."""
        for layer, kind_name in self.kinds.items():
            kind = get_kind(kind_name)
            if kind_name not in stats:
                stats[kind_name] = kind.new_stats()
            histogram = kind.histogram_values(self.values[layer])
            spread = kind.distribution_values(self.values[layer], self.extras.get(layer, {})) if distributions else None
            stats[kind_name].add(
                {layer: self.summaries[layer]},
                labels,
                None if histogram is None else {layer: histogram},
                None if spread is None else {layer: spread},
            )

    def distribution_counts(self) -> dict[str, dict[str, np.ndarray]]:
        """Each kind's distributions per position (SGE's before and after) counted over
        this batch's images: layer -> name -> (P, 100) counts (:func:`sevis.stats.count_distribution`),
        what a saved run keeps of them; layers of kinds without distributions are left out."""
        out = {}
        for layer, kind_name in self.kinds.items():
            spread = get_kind(kind_name).distribution_values(self.values[layer], self.extras.get(layer, {}))
            if spread is not None:
                out[layer] = {name: count_distribution(v) for name, v in spread.items()}
        return out


@torch.inference_mode()
def forward_batch(
    model: nn.Module,
    views: Sequence[Image.Image] | torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    top_k: int = TOP_K,
) -> BatchResult:
    """Run model views through a model loaded by :func:`sevis.load_model`, capturing.

    Args:
        views: crops made by :func:`sevis.load_view` / :func:`sevis.model_view`, as images or
            as a uint8 tensor (N, 3, H, W).
        layers: the attention layers to record (default all).
        top_k: predictions kept per image.
    """
    info = model_info(model)
    device = next(model.parameters()).device
    x = normalise(info.data_config, views).to(device)
    with capture(model, layers, module_values=True) as cap:
        logits = model(x)
    probs = logits.float().softmax(dim=1)
    top_probs, top_index = probs.topk(min(top_k, probs.shape[1]), dim=1)
    kinds = {layer.name: layer.kind for layer in cap.layers}
    values = {name: v.float().cpu().numpy() for name, v in cap.values.items()}
    extras = {name: {k: v.float().cpu().numpy() for k, v in e.items()} for name, e in cap.extras.items()}
    summaries = {}
    for name, v in values.items():
        kind = get_kind(kinds[name])
        summaries[name] = kind.summarise(v)
        if name in extras:
            summaries[name].update(kind.summarise_module(v, extras[name]))
    return BatchResult(
        top_classes=[[info.class_names[j] for j in row] for row in top_index.tolist()],
        top_probs=top_probs.cpu().numpy().astype(np.float32),
        kinds={name: kinds[name] for name in values},
        values=values,
        summaries=summaries,
        extras=extras,
    )
