"""Where a run's files are: this machine's disk, or a ``pyarrow.fs`` URI (``s3://``, ``gs://``, ``hdfs://``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import RunError, shortened

__all__ = ["Location", "is_uri"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(where: object) -> bool:
    """``where`` names a place through a filesystem's URI (``s3://bucket/run``), not a
    path on this machine (``file://`` URIs are paths on this machine)."""
    return isinstance(where, str) and bool(_SCHEME.match(where)) and not where.lower().startswith("file://")


class Location:
    """A file or folder of a run, on this machine or on a ``pyarrow.fs`` filesystem.

    Local paths keep Python's own file handling (their messages show the path as given);
    a URI's filesystem is made once, from the URI (its query sets the filesystem's
    options: ``s3://bucket/run?region=eu-west-1&endpoint_override=host:9000``), and
    every file inside shares it. Picklable: Ray's actors get the run's parts folder as one.
    """

    __slots__ = ("fs", "local", "path", "shown")

    def __init__(self, fs: pafs.FileSystem, path: str, shown: str, local: Path | None) -> None:
        self.fs, self.path, self.shown, self.local = fs, path, shown, local

    @classmethod
    def of(cls, where: str | Path | Location) -> Location:
        """The location ``where`` names: a :class:`Location`, a local path or a URI.

        Raises:
            RunError: a URI whose filesystem pyarrow does not know or cannot reach.
        """
        if isinstance(where, Location):
            return where
        if not is_uri(where):
            local = Path(where.removeprefix("file://") if isinstance(where, str) else where)
            return cls(pafs.LocalFileSystem(), str(local), str(where), local)
        assert isinstance(where, str)
        shown = _without_secrets(where)
        try:
            fs, path = pafs.FileSystem.from_uri(where)
        except (pa.ArrowException, OSError, ValueError) as err:
            why = str(err).replace(where, shown)
            for secret in filter(None, (urlsplit(where).password, urlsplit(where).query)):
                why = why.replace(secret, "…")
            raise RunError(f"cannot open {shortened(shown)}: {shortened(why)}") from None
        return cls(fs, path.rstrip("/"), shown, None)

    def __reduce__(self) -> tuple[object, ...]:
        return (Location, (self.fs, self.path, self.shown, self.local))

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"Location({self.shown!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.path, self.shown) == (other.path, other.shown)

    def __hash__(self) -> int:
        return hash((self.path, self.shown))

    @property
    def name(self) -> str:
        return self.local.name if self.local is not None else self.path.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1]

    def __truediv__(self, name: str) -> Location:
        if self.local is not None:
            return Location.of(self.local / name)
        return Location(self.fs, f"{self.path}/{name}", f"{self.shown.rstrip('/')}/{name}", None)

    def with_name(self, name: str) -> Location:
        """The location of ``name`` beside this one, on this machine (a run at a URI is a
        folder: nothing is written beside it)."""
        if self.local is None:
            raise ValueError(f"{self.shown} is at a URI: nothing is written beside it")
        return Location.of(self.local.with_name(name))

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def entries(self) -> Iterator[tuple[str, bool]]:
        """The names of a folder's entries, each with whether it is a file; a local folder
        is listed as it is read (a folder may hold a million files).

        Raises:
            OSError: not a folder, or not one that can be listed.
        """
        if self.local is not None:
            with os.scandir(self.local) as entries:
                for entry in entries:
                    yield entry.name, entry.is_file()
            return
        for found in self.fs.get_file_info(pafs.FileSelector(self.path)):
            yield found.base_name, found.type == pafs.FileType.File

    def files(self) -> list[str]:
        """The sorted names of a folder's files (none if it is absent)."""
        try:
            return sorted(name for name, is_file in self.entries() if is_file)
        except FileNotFoundError:
            return []

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)

    def append_bytes(self, data: bytes) -> None:
        """Add ``data`` at the end of the file (made if absent). Object stores cannot
        append: there the file is written again whole (a run's failures log is small)."""
        if self.local is not None:
            with open(self.local, "ab") as file:
                file.write(data)
            return
        before = self.read_bytes() if self.is_file() else b""
        self.write_bytes(before + data)

    def make_dir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def move_to(self, other: Location) -> None:
        """Rename (on a disk: atomic, replacing ``other``; on an object store: a copy, then
        the delete)."""
        self.fs.move(self.path, other.path)

    def copy_to(self, other: Location) -> None:
        self.fs.copy_file(self.path, other.path)

    def delete(self) -> None:
        """Delete the file, if there is one."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path)

    def delete_tree(self) -> None:
        """Delete the folder and everything in it, if there is one."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(self.path)


def _without_secrets(uri: str) -> str:
    """The URI as shown in messages: no user, password or query (they may hold keys)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")
