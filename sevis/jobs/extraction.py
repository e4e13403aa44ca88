"""``sevis extract``: a dataset through a model, one Parquet row per image.

DATA is a folder of class-named subfolders (the ImageFolder layout: labels from the
folder names), a flat folder (labels = the predicted class), or a zip of either.
Decoding runs in DataLoader workers so it overlaps the forward pass; each batch goes
through :func:`sevis.hooks.forward.forward_batch` and into a :class:`~sevis.runs.writer.RunWriter`
(part files, resume, merge: see :mod:`sevis.runs.writer`).
"""

from __future__ import annotations

import random
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._version import __version__
from ..errors import DataError, ImageError
from ..hooks.forward import forward_batch, load_view
from ..models.registry import model_info
from ..runs.schema import RunMetadata, batch_table, dims_of
from ..runs.writer import PART_SIZE, RunWriter

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "Item", "discover", "extract", "prepare_run"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class Item:
    """One image of a dataset: its path inside DATA and its folder label, if any."""

    path: str
    label: str | None


def _is_image_name(path: PurePosixPath) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and "__MACOSX" not in path.parts


def discover(data: str | Path, per_class: int | None = None, seed: int = 0) -> list[Item]:
    """The images of ``data`` in path order, labelled by their folder.

    Files in sub-folders get their folder's name as label; files at the top of a flat
    folder get none. With ``per_class``, at most that many images per label, sampled
    with ``seed`` (the same sample every time).

    Raises:
        DataError: ``data`` is neither a folder nor a zip, or holds no image files.
    """
    data = Path(data)
    if zipfile.is_zipfile(data):
        with zipfile.ZipFile(data) as archive:
            names = [PurePosixPath(i.filename) for i in archive.infolist() if not i.is_dir()]
    elif data.is_dir():
        names = [PurePosixPath(p.relative_to(data).as_posix()) for p in data.rglob("*") if p.is_file()]
    else:
        raise DataError(f"{data}: not a folder or a zip archive")
    names = sorted(n for n in names if _is_image_name(n))
    if not names:
        raise DataError(f"{data}: no image files (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    # NOTE one wrapping folder (data/cats/1.jpg) is common in zips: labels are always the
    # file's own folder, and files with no folder of their own are unlabelled.
    items = [Item(str(n), n.parent.name if len(n.parts) > 1 else None) for n in names]
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        by_label: dict[str | None, list[Item]] = {}
        for item in items:
            by_label.setdefault(item.label, []).append(item)
        rng = random.Random(seed)
        sampled = [
            i
            for group in by_label.values()
            for i in (rng.sample(group, per_class) if len(group) > per_class else group)
        ]
        items = sorted(sampled, key=lambda i: i.path)
    return items


class ImageFiles(Dataset[tuple[int, torch.Tensor | None, str | None]]):
    """Reads, decodes and crops one image of a folder or zip; errors come back as text.

    Items are ``(index, view, error)``: the view a uint8 tensor (3, H, W), or None and
    the reason in words.
    """

    def __init__(self, data: Path, items: Sequence[Item], data_config: dict[str, Any]) -> None:
        self.data, self.items, self.data_config = data, list(items), data_config
        self._zip: zipfile.ZipFile | None = None  # opened lazily, once per worker

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str) -> bytes:
        if self.data.is_dir():
            return (self.data / path).read_bytes()
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.data)
        return self._zip.read(path)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.items[index].path
        try:
            view = load_view(self._read(path), self.data_config)
        except ImageError as err:
            return index, None, str(err)
        except (OSError, zipfile.BadZipFile, KeyError) as err:
            return index, None, f"cannot be read ({err})"
        return index, torch.from_numpy(np.asarray(view).copy()).permute(2, 0, 1), None


def _collate(samples: list[Any]) -> list[Any]:
    return samples


def prepare_run(
    model: nn.Module,
    data: str | Path,
    out: str | Path,
    *,
    per_class: int | None = None,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    part_size: int = PART_SIZE,
) -> tuple[RunWriter, list[Item]]:
    """What every engine does first: the run's settings (one probe forward pass gives
    the layers and their sizes), the writer opened, and the images still to do."""
    info = model_info(model)
    items = discover(data, per_class, seed)
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
        labels="folder" if any(i.label is not None for i in items) else "predicted",
        per_class=per_class,
        seed=seed,
        layers=list(layers) if layers is not None else None,
        self_check=info.check.to_dict() if info.check is not None else None,
    )
    writer = RunWriter(out, metadata, resume=resume, overwrite=overwrite, part_size=part_size)
    todo = [i for i in items if i.path not in writer.done and i.path not in writer.failed]
    return writer, todo


def extract(
    model: nn.Module,
    data: str | Path,
    out: str | Path,
    *,
    batch_size: int = 32,
    workers: int = 2,
    per_class: int | None = None,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    part_size: int = PART_SIZE,
) -> Path:
    """Extract ``data`` with ``model`` (loaded by :func:`sevis.load_model`) into ``out``.

    Args:
        batch_size: images per forward pass.
        workers: DataLoader processes decoding images (0: in this process).
        per_class, seed: sample at most ``per_class`` images per label (see :func:`discover`).
        layers: layer names to keep (default all).
        resume: carry on from ``{out}.parts`` or a finished ``out``.
        overwrite: delete ``out`` and its parts first.
        progress: show a progress bar on standard error.
        part_size: rows pending before a part file is written (default 1: every batch as
            soon as it is done, so a kill loses at most the batch in flight).

    Returns:
        ``out``, the Parquet file (schema in :mod:`sevis.runs`). Ctrl-C or SIGTERM write
        what is done into ``out`` (a valid, partial run), keep the parts, and re-raise
        (SIGTERM as :class:`sevis.runs.writer.Terminated`, a ``KeyboardInterrupt``).
    """
    writer, todo = prepare_run(
        model,
        data,
        out,
        per_class=per_class,
        seed=seed,
        layers=layers,
        resume=resume,
        overwrite=overwrite,
        part_size=part_size,
    )
    with writer:
        _run(model, Path(data), todo, writer, batch_size, workers, progress)
    return Path(out)


def _run(
    model: nn.Module,
    data: Path,
    todo: list[Item],
    writer: RunWriter,
    batch_size: int,
    workers: int,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    if not todo:
        return
    info = model_info(model)
    layers = list(writer.metadata.layer_kinds)
    loader = DataLoader(
        ImageFiles(data, todo, info.data_config),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    with tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True, file=sys.stderr) as bar:
        for samples in loader:
            for i, _, error in samples:
                if error is not None:
                    writer.fail(todo[i].path, error)
            good = [(todo[i], view) for i, view, error in samples if error is None]
            if good:
                batch = forward_batch(model, torch.stack([view for _, view in good]), layers=layers)
                writer.add(batch_table(writer.schema, [i.path for i, _ in good], [i.label for i, _ in good], batch))
            bar.update(len(samples))
