"""Image files in a folder or a zip, found, decoded and batched: the one way every job
reads a dataset (``sevis extract``'s engines and the ablation).

A folder of class-named subfolders (the ImageFolder layout) gives labels from the
folder names; a flat folder or files at a zip's top give none. Decoding runs in
DataLoader workers, so it overlaps whatever the caller does with a batch; an image
that cannot be read is a :class:`~sevis.data.failure.Failure` of its batch, never an
exception, and the others are decoded.
"""

from __future__ import annotations

import os
import random
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError, ImageError
from ..limits import Limits
from ._zipcheck import ZipLimitError, check_members, count_entries
from .failure import Failure
from .images import load_view

__all__ = ["IMAGE_SUFFIXES", "DecodedBatch", "ImageFiles", "Item", "discover", "iter_batches"]

_MB = 1024**2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class Item:
    """One image of a dataset: its path inside DATA and its folder label, if any."""

    path: str
    label: str | None


def _is_image_name(path: PurePosixPath) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and "__MACOSX" not in path.parts


def discover(
    data: str | Path, per_class: int | None = None, seed: int = 0, labels: Mapping[str, str] | None = None
) -> list[Item]:
    """The images of ``data`` in path order, labelled by their folder.

    Files in sub-folders get their folder's name as label; files at the top of a flat
    folder get none. ``labels`` (file name without extension -> label, as
    :func:`sevis.data.labels.read_labels` gives) label the images they name instead,
    wherever they lie. With ``per_class``, at most that many images per label, sampled
    with ``seed`` (the same sample every time).

    Raises:
        DataError: ``data`` is neither a folder nor a zip, or holds no image files.
    """
    data = Path(data)
    if zipfile.is_zipfile(data):
        names = [PurePosixPath(name) for name in _zip_names(data)]
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
    if labels is not None:
        items = [Item(i.path, labels.get(PurePosixPath(i.path).stem, i.label)) for i in items]
        if not any(PurePosixPath(i.path).stem in labels for i in items):
            raise DataError(f"{data}: the label file names none of its images (matched by file name)")
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


def _zip_names(data: Path) -> list[str]:
    """The files of the zip ``data``, its directory checked before it is listed."""
    limits = Limits.from_env()
    try:
        with open(data, "rb") as f:
            count_entries(f, limits.zip_files)
            with zipfile.ZipFile(f) as archive:
                infos = archive.infolist()
                check_members(f, infos, archive.start_dir)
    except (ZipLimitError, zipfile.BadZipFile) as err:
        raise DataError(f"{data}: {str(err)[:200]}") from None
    return [info.filename for info in infos if not info.is_dir()]


class ImageFiles(Dataset[tuple[int, torch.Tensor | None, str | None]]):
    """Reads, decodes and crops one image of a folder or zip; errors come back as text.

    Items are ``(index, view, error)``: the view a uint8 tensor (3, H, W), or None and
    the reason in words.
    """

    def __init__(self, data: Path, items: Sequence[Item], data_config: dict[str, Any], max_bytes: int) -> None:
        self.data, self.items, self.data_config, self.max_bytes = data, list(items), data_config, max_bytes
        self._zip: zipfile.ZipFile | None = None  # opened lazily, once per worker

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str) -> bytes:
        """The file's bytes; its size is checked before reading (a sparse 3 GB file
        costs nothing to refuse) and never more than the limit is read."""
        if self.data.is_dir():
            with open(self.data / path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > self.max_bytes:
                    raise _TooLarge(size)
                return f.read(self.max_bytes + 1)
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.data)
        info = self._zip.getinfo(path)
        if info.file_size > self.max_bytes:
            raise _TooLarge(info.file_size)
        with self._zip.open(info) as member:
            return member.read(self.max_bytes + 1)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.items[index].path
        try:
            data = self._read(path)
            if len(data) > self.max_bytes:
                raise _TooLarge(len(data))
            view = load_view(data, self.data_config)
        except _TooLarge as err:
            return (
                index,
                None,
                (
                    f"{err.size / _MB:,.0f} MB, more than the limit of {self.max_bytes / _MB:,.0f} MB "
                    "for an image file (SEVIS_MAX_IMAGE_MB); not read"
                ),
            )
        except ImageError as err:
            return index, None, str(err)
        except (OSError, zipfile.BadZipFile, KeyError) as err:
            return index, None, f"cannot be read ({str(err)[:200]})"
        return index, torch.from_numpy(np.asarray(view).copy()).permute(2, 0, 1), None


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass
class DecodedBatch:
    """One batch of a dataset, decoded.

    Attributes:
        items: the images decoded, in dataset order.
        views: their crops as the model sees them, (N, 3, H, W) uint8; None when every
            image of the batch failed.
        failures: the batch's images that could not be read (``name`` is the path).
    """

    items: list[Item]
    views: torch.Tensor | None
    failures: list[Failure] = field(default_factory=list)

    def __len__(self) -> int:
        """Images taken from the dataset: decoded and failed."""
        return len(self.items) + len(self.failures)


def _keep(samples: list[Any]) -> list[Any]:
    return samples  # a list of (index, view, error): views of failed images are None


def iter_batches(
    data: str | Path,
    items: Sequence[Item],
    data_config: Mapping[str, Any],
    *,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = False,
    limits: Limits | None = None,
) -> Iterator[DecodedBatch]:
    """Decode ``items`` of ``data`` (a folder or a zip) in batches, in order.

    Args:
        data_config: the model's eval transform (:attr:`sevis.ModelInfo.data_config`).
        batch_size: images per batch.
        workers: DataLoader processes decoding images (0: in this process).
        progress: show a progress bar on standard error.
        limits: ``image_bytes`` bounds each file (:meth:`Limits.from_env` when None);
            a larger one is a failure, never read.
    """
    from tqdm.auto import tqdm  # NOTE tqdm.auto looks for a notebook: only when asked to iterate

    items = list(items)
    if not items:
        return
    loader = DataLoader(
        ImageFiles(Path(data), items, dict(data_config), (limits or Limits.from_env()).image_bytes),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_keep,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    with tqdm(total=len(items), unit="img", disable=not progress, dynamic_ncols=True, file=sys.stderr) as bar:
        for samples in loader:
            failures = [Failure(items[i].path, error) for i, _, error in samples if error is not None]
            good = [(items[i], view) for i, view, error in samples if error is None]
            views = torch.stack([view for _, view in good]) if good else None
            bar.update(len(samples))
            yield DecodedBatch([item for item, _ in good], views, failures)
