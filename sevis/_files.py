"""Files on disk: written whole or not at all (a temporary name beside it, then a
rename), and opened once, then checked (what was opened, not what a name named)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["FileRefused", "opened_within", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path``: readers see the previous file or the new one whole,
    never a part (a full disk or a kill leaves the previous file as it was).

    Raises:
        OSError: the folder cannot be written; no temporary file is left behind.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


class FileRefused(ValueError):
    """A path that does not name a regular file inside the folders allowed; the message
    says which, without the path (callers add the name they were given)."""


@contextlib.contextmanager
def opened_within(path: str | os.PathLike[str], folders: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """Open ``path`` once, then check what was opened: a regular file (not a FIFO, a
    device or a folder; opening never blocks) whose real path, as the kernel reports it
    for the descriptor, lies inside one of ``folders``. Symbolic links are followed, so
    a link swapped in between a check by name and the read is caught here, where the
    file is opened. Yields a path that reopens that very file while the block runs
    (``/proc/self/fd/N``), whatever is renamed or swapped meanwhile.

    Raises:
        FileRefused: the path cannot be opened (absent, a NUL byte, too long, a loop),
            is not a regular file, or lies outside every folder.
    """
    allowed = [Path(folder).resolve() for folder in folders]
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileRefused("no such file") from None
    except (OSError, ValueError) as err:  # ValueError: an embedded NUL byte
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "not a valid path"
        raise FileRefused(f"cannot be opened ({reason.lower()})") from None
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode):
            raise FileRefused("not a regular file")
        proc = Path(f"/proc/self/fd/{descriptor}")
        if proc.is_symlink():  # Linux: the kernel names what the descriptor is
            real = Path(os.readlink(proc))
        else:  # elsewhere: the name resolved now must still be the file opened
            real = Path(path).resolve()
            named = os.stat(real)
            if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
                raise FileRefused("changed while it was opened")
            proc = real
        if not any(real.is_relative_to(folder) for folder in allowed):
            raise FileRefused("outside the folders allowed")
        yield proc
    finally:
        os.close(descriptor)
