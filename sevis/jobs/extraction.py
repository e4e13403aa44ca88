"""``sevis extract``: a dataset through a model, one Parquet row per image.

DATA is a folder of class-named subfolders (the ImageFolder layout: labels from the
folder names), a flat folder (labels = the predicted class), or a zip of either.
Decoding runs in DataLoader workers so it overlaps the forward pass; each batch goes
through :func:`sevis.hooks.forward.forward_batch` and into a :class:`~sevis.runs.writer.RunWriter`
(part files, resume, merge: see :mod:`sevis.runs.writer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..data.files import Item, discover, iter_batches
from ..data.labels import read_labels
from ..hooks.forward import forward_batch
from ..models.registry import model_info
from ..runs import is_uri
from ..runs.schema import RunMetadata, batch_table, dims_of
from ..runs.writer import RunWriter
from .settings import RunSettings

__all__ = ["extract", "prepare_run"]


def prepare_run(
    model: nn.Module, data: str | Path, out: str | Path, settings: RunSettings | None = None
) -> tuple[RunWriter, list[Item]]:
    """What every engine does first: the run's settings (one probe forward pass gives
    the layers and their sizes), the writer opened, and the images still to do."""
    settings = settings or RunSettings()
    per_class, seed, layers = settings.per_class, settings.seed, settings.layers
    info = model_info(model)
    given = read_labels(settings.labels, settings.synsets) if settings.labels is not None else None
    items = discover(data, per_class, seed, given)
    h, w = info.data_config["input_size"][-2:]
    probe = forward_batch(model, torch.zeros(1, 3, h, w, dtype=torch.uint8), layers=layers)
    attention: dict[str, list[str]] = {}
    for layer, kind in probe.kinds.items():
        attention.setdefault(kind, []).append(layer)
    provenance = info.provenance
    metadata = RunMetadata(
        model=provenance.model,
        weights=provenance.weights,
        weights_sha256=provenance.weights_sha256,
        untrained=provenance.untrained,
        sevis_version=__version__,
        data_config=dict(info.data_config),
        attention=attention,
        dims=dims_of(probe),
        source=str(data),
        labels=label_source(items, given),
        per_class=per_class,
        seed=seed,
        layers=list(layers) if layers is not None else None,
        self_check=info.check.to_dict() if info.check is not None else None,
        distributions=settings.distributions and bool(probe.distribution_counts()),
    )
    writer = RunWriter(
        out, metadata, resume=settings.resume, overwrite=settings.overwrite, part_size=settings.part_size
    )
    todo = [i for i in items if i.path not in writer.done and i.path not in writer.failed]
    return writer, todo


def label_source(items: list[Item], given: Mapping[str, str] | None) -> str:
    """What a run's labels are: ``"file"`` (a label file), ``"folder"``, or ``"predicted"``."""
    if given is not None:
        return "file"
    return "folder" if any(i.label is not None for i in items) else "predicted"


def extract(
    model: nn.Module,
    data: str | Path,
    out: str | Path,
    settings: RunSettings | None = None,
    *,
    progress: bool = True,
    **options: Any,
) -> Path | str:
    """Extract ``data`` with ``model`` (loaded by :func:`sevis.load_model`) into ``out``.

    Args:
        data: a folder of class-named subfolders (labels from the folder names), a flat
            folder (labels = the predicted class), or a zip of either.
        settings: the run's settings (:class:`~sevis.jobs.settings.RunSettings`).
        progress: show a progress bar on standard error.
        **options: fields of :class:`~sevis.jobs.settings.RunSettings` to change
            (``batch_size=8, per_class=50``).

    Returns:
        ``out``, the Parquet file or run folder (schema in :mod:`sevis.runs`); a
        ``pyarrow.fs`` URI (``s3://bucket/run``) is returned as it was given. Ctrl-C or SIGTERM write
        what is done into ``out`` (a valid, partial run), keep the parts, and re-raise
        (SIGTERM as :class:`sevis.runs.writer.Terminated`, a ``KeyboardInterrupt``).
    """
    settings = RunSettings.of(settings, **options)
    writer, todo = prepare_run(model, data, out, settings)
    with writer:
        _run(model, Path(data), todo, writer, settings.batch_size, settings.workers, progress)
    return out if is_uri(out) else Path(out)


def _run(
    model: nn.Module,
    data: Path,
    todo: list[Item],
    writer: RunWriter,
    batch_size: int,
    workers: int,
    progress: bool,
) -> None:
    info = model_info(model)
    layers = list(writer.metadata.layer_kinds)
    for decoded in iter_batches(
        data, todo, info.data_config, batch_size=batch_size, workers=workers, progress=progress
    ):
        for failure in decoded.failures:
            writer.fail(failure.name, failure.reason)
        if decoded.views is not None:
            batch = forward_batch(model, decoded.views, layers=layers)
            paths, labels = [i.path for i in decoded.items], [i.label for i in decoded.items]
            counts = batch.distribution_counts() if writer.metadata.distributions else None
            writer.add(batch_table(writer.schema, paths, labels, batch, writer.metadata.labels), counts)
