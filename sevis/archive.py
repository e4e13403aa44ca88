"""Labelled image sets from a zip: one folder per class (the ImageFolder layout).

``cats/1.jpg`` is labelled ``cats``; a file at the top level has no label (the
model's prediction is used). A single wrapping folder (``data/cats/1.jpg``) is fine:
the label is always the file's own folder. Hidden files and ``__MACOSX`` are skipped.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from .analysis import Failure
from .errors import ArchiveError

__all__ = ["LabelledFile", "read_zip"]

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class LabelledFile:
    name: str  # path inside the archive
    label: str | None
    data: bytes


def read_zip(
    data: bytes, *, max_files: int = MAX_FILES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> tuple[list[LabelledFile], list[Failure]]:
    """The files of a zip with their class label (their folder's name), in name order,
    and the entries that could not be extracted.

    Raises:
        ArchiveError: not a zip, or more files or uncompressed bytes than allowed.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as err:
        raise ArchiveError(f"not a readable zip archive ({err})") from None
    entries = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and "__MACOSX" not in PurePosixPath(info.filename).parts
        and not PurePosixPath(info.filename).name.startswith(".")
    ]
    if len(entries) > max_files:
        raise ArchiveError(f"the archive holds {len(entries):,} files, more than the limit of {max_files:,}")
    total = sum(info.file_size for info in entries)
    if total > max_total_bytes:
        raise ArchiveError(
            f"the archive unpacks to {total / 1024**2:,.0f} MB, more than the limit of "
            f"{max_total_bytes / 1024**2:,.0f} MB"
        )
    files, failures = [], []
    for info in sorted(entries, key=lambda i: i.filename):
        path = PurePosixPath(info.filename)
        try:
            content = archive.read(info)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError, zlib.error) as err:
            # bad CRC or data, unsupported compression, encrypted entries, truncated streams
            failures.append(Failure(info.filename, f"cannot be extracted from the zip ({err})"))
            continue
        label = path.parent.name if len(path.parts) > 1 else None
        files.append(LabelledFile(info.filename, label, content))
    return files, failures
