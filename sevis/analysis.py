"""One pass over a set of images: decode, preprocess, hooked forward, statistics.

This is the code path the dashboard and the command line share. A file that cannot
be decoded is reported by name with the reason, and the others are analysed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from .capture import Capture, capture
from .errors import ImageError
from .images import decode_image, model_view, normalise
from .models import model_info
from .stats import ExcitationStats, MaskStats, predicted_labels

__all__ = ["Analysis", "Failure", "ImageResult", "analyse"]

TOP_K = 5


@dataclass
class ImageResult:
    """What one image did to the model.

    Attributes:
        name: the file name (or any identifier the caller gave).
        label: the given label, or the model's top-1 class name when none was given.
        view: the resized, centre-cropped RGB image the model saw, (H, W, 3) uint8.
        top_classes: the ``TOP_K`` most probable class names, most probable first.
        top_probs: their softmax probabilities.
        excitations: SE layer -> excitation vector, (C,) float32.
        masks: SGE layer -> spatial masks, (G, H, W) float32; empty unless asked for.
        mask_means: SGE layer -> each group's mask mean, (G,) float32.
        mask_variances: SGE layer -> each group's spatial variance, (G,) float32.
    """

    name: str
    label: str
    view: np.ndarray = field(repr=False)
    top_classes: list[str]
    top_probs: list[float]
    excitations: dict[str, np.ndarray] = field(repr=False)
    masks: dict[str, np.ndarray] = field(repr=False)
    mask_means: dict[str, np.ndarray] = field(repr=False)
    mask_variances: dict[str, np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class Failure:
    """A file that was not analysed, and why, in words for a person."""

    name: str
    reason: str


@dataclass
class Analysis:
    """Results of :func:`analyse`: per image, per class, and what failed."""

    model: str
    weights: str
    untrained: bool
    images: list[ImageResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    se: ExcitationStats = field(default_factory=ExcitationStats)
    sge: MaskStats = field(default_factory=MaskStats)

    def excitation_frame(
        self, layers: Sequence[str] | None = None, images: Sequence[ImageResult] | None = None
    ) -> pd.DataFrame:
        """Long table of per-image excitations: image, label, layer, channel, excitation."""
        images = self.images if images is None else images
        frames = [
            pd.DataFrame({
                "image": r.name, "label": r.label, "layer": layer,
                "channel": np.arange(len(r.excitations[layer])), "excitation": r.excitations[layer],
            })
            for r in images
            for layer in (layers if layers is not None else r.excitations)
        ]
        columns = ["image", "label", "layer", "channel", "excitation"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def analyse(
    model: nn.Module,
    files: Iterable[tuple[str, bytes]],
    labels: Sequence[str | None] | None = None,
    *,
    batch_size: int = 8,
    keep_masks: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Analyse image files with a model loaded by :func:`sevis.load_model`.

    Args:
        model: the model; its ``sevis_info`` gives preprocessing and class names.
        files: ``(name, bytes)`` pairs.
        labels: one label per file; ``None`` (for all or one) means the predicted class.
        batch_size: images per forward pass.
        keep_masks: keep every image's SGE masks (3.5 MB per image for SGE-ResNet-50);
            the per-group summaries and the class statistics are always kept.
        progress: called as ``progress(done, total)`` after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    info = model_info(model)
    files = list(files)
    if labels is not None and len(labels) != len(files):
        raise ValueError(f"labels must have one entry per file: {len(labels)} for {len(files)}")
    result = Analysis(info.name, info.weights, info.untrained)

    device = next(model.parameters()).device
    total = len(files)
    for start in range(0, total, batch_size):
        # Decode per batch: a folder of large photographs never sits in memory at once.
        batch, views = [], []
        for i in range(start, min(start + batch_size, total)):
            name, data = files[i]
            try:
                image = decode_image(data)
            except ImageError as err:
                result.failures.append(Failure(name, str(err)))
                continue
            batch.append((name, labels[i] if labels is not None else None))
            views.append(model_view(info.data_config, image))
        if batch:
            x = normalise(info.data_config, views).to(device)
            with torch.inference_mode(), capture(model) as cap:
                logits = model(x)
            _collect(result, batch, views, logits, cap, info.class_names, keep_masks)
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return result


def _collect(
    result: Analysis,
    batch: list[tuple[str, str | None]],
    views: list[Image.Image],
    logits: torch.Tensor,
    cap: Capture,
    class_names: Sequence[str],
    keep_masks: bool,
) -> None:
    probs = logits.float().softmax(dim=1)
    top_probs, top_index = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
    predicted = predicted_labels(logits, class_names)
    labels = [given if given is not None else predicted[i] for i, (_, given) in enumerate(batch)]
    se = {k: v.float().cpu().numpy() for k, v in cap.excitations.items()}
    sge = {k: v.float().cpu().numpy() for k, v in cap.masks.items()}
    result.se.update(se, labels)
    means, variances = result.sge.update(sge, labels)
    for i, (name, _) in enumerate(batch):
        result.images.append(
            ImageResult(
                name=name,
                label=labels[i],
                view=np.asarray(views[i]),
                top_classes=[class_names[j] for j in top_index[i].tolist()],
                top_probs=top_probs[i].tolist(),
                excitations={k: v[i] for k, v in se.items()},
                masks={k: v[i] for k, v in sge.items()} if keep_masks else {},
                mask_means={k: v[i].astype(np.float32) for k, v in means.items()},
                mask_variances={k: v[i].astype(np.float32) for k, v in variances.items()},
            )
        )
