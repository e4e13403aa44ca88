"""The cache of saved runs' statistics and chance bands: one pickle per run, named by the hash of its footer."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyarrow.fs import FileType

from .._version import __version__
from ._location import Location
from .schema import run_files

__all__ = ["cache_dir"]


CACHE_VERSION = 2
"""Bumped when what the run cache holds changes: older cache files are then not used."""


def cache_dir() -> Path:
    """Where statistics of saved runs are cached: ``$SEVIS_CACHE_DIR/runs`` or
    ``~/.cache/sevis/runs``."""
    return Path(os.environ.get("SEVIS_CACHE_DIR") or Path.home() / ".cache" / "sevis") / "runs"


def _cache_key(path: Path | Location, layers: Sequence[str] | None) -> str:
    """Names a run's statistics: the hash of its Parquet footer (every column chunk's
    offsets, sizes and statistics, and the sevis metadata), its size and modification time,
    the layers read and the cache format; of a run folder, those of each of its files (by
    name) and of its failures log. Hashing the footer, not 3 GB of rows, keeps a second
    open fast; a rewritten file changes its time and footer. A run at a URI is keyed by its
    URI too (two buckets' runs of equal footers are two runs)."""
    where = Location.of(path)
    digest = hashlib.sha256(f"{CACHE_VERSION}|{__version__}|{layers}".encode())
    if where.local is None:
        digest.update(f"uri|{where.shown}|".encode())
    if where.is_dir():
        for part in run_files(where):
            digest.update(part.name.encode() + b"\0")
            _digest_file(part, digest)
        failures = where / "failures.jsonl"
        found = failures.info()
        if found.type == FileType.File:
            digest.update(f"failures|{found.size}|{found.mtime_ns}".encode())
    else:
        _digest_file(where, digest)
    return digest.hexdigest()


def _digest_file(path: Location, digest: Any) -> None:
    """Add a Parquet file's size, modification time and footer to ``digest``."""
    found = path.info()
    size = found.size or 0
    digest.update(f"|{size}|{found.mtime_ns}|".encode())
    with path.fs.open_input_file(path.path) as file:
        file.seek(max(size - 8, 0))
        tail = file.read(8)
        footer = int.from_bytes(tail[:4], "little") if len(tail) == 8 and tail[4:] == b"PAR1" else 0
        file.seek(max(size - 8 - min(footer, size), 0))
        digest.update(file.read(min(footer, size) + 8))


def _nulls_file(target: Path, kind: str) -> Path:
    return target.with_name(f"{target.stem}.{kind}.nulls")


def _store(value: object, target: Path) -> None:
    """Pickle ``value`` to ``target``, whole or not at all; a cache that cannot be written
    is only slower, never an error."""
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as file:
            pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)


def _load(target: Path) -> object:
    try:
        with target.open("rb") as file:
            return pickle.load(file)  # sevis's own cache folder, written by _store only
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
        return None
