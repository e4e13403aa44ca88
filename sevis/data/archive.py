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
from typing import BinaryIO

from ..errors import ArchiveError
from ..limits import Limits
from ._zipcheck import ZipLimitError, check_members, count_entries
from .failure import Failure

__all__ = ["LabelledFile", "read_zip"]

_MB = 1024**2


@dataclass(frozen=True)
class LabelledFile:
    """One image file of a zip: its path inside the archive, its class (the folder it is in,
    None at the top) and its bytes."""

    name: str  # path inside the archive
    label: str | None
    data: bytes


def read_zip(source: bytes | BinaryIO, *, limits: Limits | None = None) -> tuple[list[LabelledFile], list[Failure]]:
    """The files of a zip with their class label (their folder's name), in name order,
    and the entries that could not be extracted.

    Bounded before anything is unpacked (``limits``: :meth:`Limits.from_env` when None):
    the central directory's entries are counted without listing them (and refused when
    the archive's records disagree or its entries share bytes); a member larger
    than ``limits.zip_member_bytes`` unpacked is a failure named by its path; members
    are read one at a time, never beyond their declared size.

    Args:
        source: the archive's bytes, or a seekable binary file (an upload), read in place.

    Raises:
        ArchiveError: not a zip, or more files or unpacked bytes than allowed.
    """
    limits = limits or Limits.from_env()
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        count_entries(f, limits.zip_files)
        f.seek(0)
        archive = zipfile.ZipFile(f)
        check_members(f, archive.infolist(), archive.start_dir)
    except ZipLimitError as err:
        raise ArchiveError(str(err)) from None
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ArchiveError(f"not a readable zip archive ({str(err)[:200]})") from None
    entries = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and "__MACOSX" not in PurePosixPath(info.filename).parts
        and not PurePosixPath(info.filename).name.startswith(".")
    ]
    failures = [
        Failure(
            _shown(info.filename),
            f"{info.file_size / _MB:,.0f} MB unpacked, more than the limit of "
            f"{limits.zip_member_bytes / _MB:,.0f} MB for one file (SEVIS_ZIP_MAX_MEMBER_MB); not unpacked",
        )
        for info in entries
        if info.file_size > limits.zip_member_bytes
    ]
    entries = [info for info in entries if info.file_size <= limits.zip_member_bytes]
    total = sum(info.file_size for info in entries)
    if total > limits.zip_total_bytes:
        raise ArchiveError(
            f"the archive unpacks to {total / _MB:,.0f} MB, more than the limit of "
            f"{limits.zip_total_bytes / _MB:,.0f} MB (SEVIS_ZIP_MAX_MB)"
        )
    files = []
    for info in sorted(entries, key=lambda i: i.filename):
        path = PurePosixPath(info.filename)
        try:
            content = archive.read(info)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError, zlib.error) as err:
            # bad CRC or data, unsupported compression, encrypted entries, truncated streams
            failures.append(Failure(_shown(info.filename), f"cannot be extracted from the zip ({str(err)[:200]})"))
            continue
        label = path.parent.name if len(path.parts) > 1 else None
        files.append(LabelledFile(info.filename, label, content))
    return files, failures


def _shown(name: str) -> str:
    """An entry's path for a message, at most 200 characters."""
    return name if len(name) <= 200 else name[:199] + "…"
