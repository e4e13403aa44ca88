"""Analyse a set of image files: per image, per class, and what failed.

A file that cannot be decoded is reported by name with the reason, and the others
are analysed. Batches go through :mod:`sevis.hooks.forward`, the path ``sevis extract``
uses too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image
from torch import nn

from ..attention.kinds import get_kind
from ..data.failure import Failure
from ..data.images import load_view
from ..errors import ImageError, UnknownLayerError
from ..hooks.forward import TOP_K, BatchResult, forward_batch
from ..models.registry import model_info
from ..provenance import Provenance
from ..runs.reader import LayerRows
from ..stats.by_kind import StatsByKind
from ..stats.classes import ClassStats
from ..stats.measures import PERMUTATIONS, NullBand, specificity_nulls

__all__ = ["TOP_K", "Analysis", "Failure", "ImageResult", "analyse"]


@dataclass
class ImageResult:
    """What one image did to the model.

    Attributes:
        name: the file name (or any identifier the caller gave).
        label: the given label, or the model's top-1 class name when none was given.
        view: the resized, centre-cropped RGB image the model saw, (H, W, 3) uint8.
        top_classes: the ``TOP_K`` most probable class names, most probable first.
        top_probs: their softmax probabilities.
        kinds: layer -> its kind's name, in depth order.
        summaries: layer -> field -> the image's summary vector (D,) (see
            :meth:`sevis.attention.kinds.AttentionKind.summarise`).
        values: layer -> the captured values of this image (SE (C,), SGE (G, H, W));
            only when :func:`analyse` was asked to keep them.
        extras: layer -> name -> what the kind recorded from the whole module (SGE: the
            group feature norms before and after it, (G, H, W)); kept with ``values``.
    """

    name: str
    label: str
    view: np.ndarray = field(repr=False)
    top_classes: list[str]
    top_probs: list[float]
    kinds: dict[str, str] = field(repr=False)
    summaries: dict[str, dict[str, np.ndarray]] = field(repr=False)
    values: dict[str, np.ndarray] = field(repr=False)
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def _of_kind(self, kind: str, field_name: str) -> dict[str, np.ndarray]:
        return {k: self.summaries[k][field_name] for k, v in self.kinds.items() if v == kind}

    @property
    def excitations(self) -> dict[str, np.ndarray]:
        """SE layer -> excitation vector, (C,) float32."""
        return self._of_kind("se", "excitation")

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """SGE layer -> spatial masks, (G, H, W) float32; empty unless kept."""
        return {k: v for k, v in self.values.items() if self.kinds[k] == "sge"}

    @property
    def mask_means(self) -> dict[str, np.ndarray]:
        """SGE layer -> each group's mask mean, (G,)."""
        return self._of_kind("sge", "mean")

    @property
    def mask_variances(self) -> dict[str, np.ndarray]:
        """SGE layer -> each group's spatial variance of the mask, (G,)."""
        return self._of_kind("sge", "var")


@dataclass
class Analysis(StatsByKind):
    """Results of :func:`analyse`: per image, per class (per kind of attention), failures."""

    provenance: Provenance
    images: list[ImageResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, ClassStats] = field(default_factory=dict)

    def relabel(self, labels: Sequence[str | None]) -> Analysis:
        """The same images under other labels (None: the image's predicted class), without
        running the model: the analysis must have been made with one distinct label per
        image (``analyse(..., labels=[a distinct id per file])``), whose per-image statistics
        are pooled into the new classes (:meth:`ClassStats.regroup`)."""
        if len(labels) != len(self.images):
            raise ValueError(f"labels must have one entry per image: {len(labels)} for {len(self.images)}")
        own = [r.label for r in self.images]
        if len(set(own)) != len(own) or any(s.classes != own for s in self.stats.values() if s.layers):
            raise ValueError("relabel needs an analysis made with one distinct label per image")
        new = [label if label is not None else r.top_classes[0] for label, r in zip(labels, self.images, strict=True)]
        mapping = dict(zip(own, new, strict=True))
        return Analysis(
            self.provenance,
            [dataclasses.replace(r, label=label) for r, label in zip(self.images, new, strict=True)],
            list(self.failures),
            {kind: stats.regroup(mapping) for kind, stats in self.stats.items()},
        )

    def parts(self) -> list[Analysis]:
        """One analysis per image, in order, each with its own image's statistics (the images'
        labels must be distinct, as for :meth:`relabel`); failures are not in any part."""
        return [
            Analysis(self.provenance, [r], [], {k: s.regroup({r.label: r.label}) for k, s in self.stats.items()})
            for r in self.images
        ]

    @staticmethod
    def combine(parts: Sequence[Analysis]) -> Analysis:
        """The analyses one after the other: images, failures and statistics (of one model)."""
        if not parts:
            raise ValueError("combine needs at least one analysis")
        out = Analysis(parts[0].provenance)
        for part in parts:
            out.images += part.images
            out.failures += part.failures
            for kind, stats in part.stats.items():
                if kind not in out.stats:
                    out.stats[kind] = stats.regroup({c: c for c in stats.classes})  # a copy
                else:
                    out.stats[kind].merge(stats)
        return out

    def rows(self, kind: str) -> dict[str, np.ndarray]:
        """Per layer of ``kind``, its first summary field of every image, (N, D), in the
        order of :attr:`images` (whose labels go with the rows)."""
        field_name = get_kind(kind).fields[0]
        layers = [k for k, v in (self.images[0].kinds.items() if self.images else ()) if v == kind]
        return {layer: np.stack([r.summaries[layer][field_name] for r in self.images]) for layer in layers}

    def iter_layer(self, layer: str, field_name: str | None = None) -> Iterator[LayerRows]:
        """Every image's ``layer`` values (its kind's first summary field by default), in
        the order of :attr:`images`: one :class:`~sevis.runs.reader.LayerRows`, as
        :meth:`sevis.Run.iter_layer` gives a saved run's.

        Raises:
            UnknownLayerError: no image has such a layer.
        """
        kind = self.images[0].kinds.get(layer) if self.images else None
        if kind is None:
            raise UnknownLayerError(
                f"no layer {layer!r}; the images have {list(self.images[0].kinds) if self.images else []}"
            )
        name = field_name or get_kind(kind).fields[0]
        yield LayerRows(
            np.stack([r.summaries[layer][name] for r in self.images]),
            [r.label for r in self.images],
            [r.name for r in self.images],
        )

    def null_bands(self, kind: str = "se", *, permutations: int = PERMUTATIONS, seed: int = 0) -> dict[str, NullBand]:
        """Each layer's class-specificity under label permutations (see
        :func:`sevis.stats.specificity_null`): the chance level its depth curve is read against."""
        return specificity_nulls(self.rows(kind), [r.label for r in self.images], permutations=permutations, seed=seed)

    def excitation_frame(
        self, layers: Sequence[str] | None = None, images: Sequence[ImageResult] | None = None
    ) -> pd.DataFrame:
        """Long table of per-image excitations: image, label, layer, channel, excitation."""
        images = self.images if images is None else images
        frames = [
            pd.DataFrame(
                {
                    "image": r.name,
                    "label": r.label,
                    "layer": layer,
                    "channel": np.arange(len(r.excitations[layer])),
                    "excitation": r.excitations[layer],
                }
            )
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
    keep_values: bool = False,
    distributions: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Analyse image files with a model loaded by :func:`sevis.load_model`.

    Args:
        model: the model; its ``sevis_info`` gives preprocessing and class names.
        files: ``(name, bytes)`` pairs.
        labels: one label per file; ``None`` (for all or one) means the predicted class.
        batch_size: images per forward pass.
        keep_values: keep every image's captured values, e.g. its SGE masks (3.5 MB per
            image for SGE-ResNet-50); summaries and class statistics are always kept.
        distributions: count each kind's distributions per position in the statistics
            (SGE's activations before and after, the paper's figure:
            :func:`sevis.figures.group_distributions`; about 1.6 MB per class).
        progress: called as ``progress(done, total)`` after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    info = model_info(model)
    files = list(files)
    if labels is not None and len(labels) != len(files):
        raise ValueError(f"labels must have one entry per file: {len(labels)} for {len(files)}")
    result = Analysis(info.provenance)
    total = len(files)
    for start in range(0, total, batch_size):
        # Decode per batch: a folder of large photographs never sits in memory at once.
        names: list[str] = []
        given: list[str | None] = []
        views: list[Image.Image] = []
        for i in range(start, min(start + batch_size, total)):
            name, data = files[i]
            try:
                views.append(load_view(data, info.data_config))
            except ImageError as err:
                result.failures.append(Failure(name, str(err)))
                continue
            names.append(name)
            given.append(labels[i] if labels is not None else None)
        if views:
            _collect(result, names, given, views, forward_batch(model, views), keep_values, distributions)
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return result


def _collect(
    result: Analysis,
    names: list[str],
    given: list[str | None],
    views: list[Image.Image],
    batch: BatchResult,
    keep_values: bool,
    distributions: bool = False,
) -> None:
    labels = [
        label if label is not None else predicted for label, predicted in zip(given, batch.predicted, strict=True)
    ]
    batch.accumulate(result.stats, labels, distributions=distributions)
    for i, name in enumerate(names):
        result.images.append(
            ImageResult(
                name=name,
                label=labels[i],
                view=np.asarray(views[i]),
                top_classes=batch.top_classes[i],
                top_probs=batch.top_probs[i].tolist(),
                kinds=batch.kinds,
                summaries={k: {f: v[i] for f, v in s.items()} for k, s in batch.summaries.items()},
                values={k: v[i] for k, v in batch.values.items()} if keep_values else {},
                extras={k: {n: v[i] for n, v in e.items()} for k, e in batch.extras.items()} if keep_values else {},
            )
        )
