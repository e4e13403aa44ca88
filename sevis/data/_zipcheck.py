"""Counting a zip's entries before :mod:`zipfile` lists them.

``zipfile.ZipFile`` builds a Python object for every entry of the central directory
as it opens the archive: a 30 MB zip of 3 million empty entries costs minutes and
gigabytes before any limit on the entry count can be applied. The end-of-central-
directory record states the count and the directory's size, and walking the
directory's fixed-size headers costs nothing per entry; both are checked here.
"""

from __future__ import annotations

import struct
import zipfile
from typing import BinaryIO

__all__ = ["ZipLimitError", "count_entries"]

_EOCD = struct.Struct("<4s4H2LH")  # signature, disks, entries here, entries, size, offset, comment
_LOCATOR64 = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 record, disks
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries here, entries, size, offset
_HEADER = struct.Struct("<4s6H3L5H2L")  # a central directory file header (46 bytes)
_MAX_COMMENT = 0xFFFF


class ZipLimitError(ValueError):
    """A central directory that holds more entries than allowed."""


def count_entries(f: BinaryIO, max_entries: int) -> int:
    """The number of entries in the zip ``f`` (a seekable binary file), read from its
    central directory without building them.

    Raises:
        ZipLimitError: more than ``max_entries`` entries, declared or found.
        zipfile.BadZipFile: no readable end-of-central-directory record.
    """
    f.seek(0, 2)
    size = f.tell()
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise zipfile.BadZipFile("no end-of-central-directory record (not a zip, or truncated)")
    eocd_at = tail_start + at
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    end = eocd_at
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # zip64: the counts are in another record
        if eocd_at < _LOCATOR64.size:
            raise zipfile.BadZipFile("a zip64 archive without its zip64 record")
        f.seek(eocd_at - _LOCATOR64.size)
        signature, _, record_at, _ = _LOCATOR64.unpack(f.read(_LOCATOR64.size))
        if signature != b"PK\x06\x07" or record_at > size - _EOCD64.size:
            raise zipfile.BadZipFile("a zip64 archive without its zip64 record")
        f.seek(record_at)
        record = f.read(_EOCD64.size)
        if record[:4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("a zip64 archive without its zip64 record")
        entries, cd_size = _EOCD64.unpack(record)[7:9]
        end = record_at
    if entries > max_entries:
        raise ZipLimitError(f"the archive declares {entries:,} entries, more than the limit of {max_entries:,}")
    if cd_size > end:
        raise zipfile.BadZipFile("the central directory is larger than the file (truncated or malformed)")
    # NOTE the declared count may lie; zipfile walks the directory's bytes, so count those.
    position, stop, found = end - cd_size, end, 0
    while position + _HEADER.size <= stop:
        f.seek(position)
        header = _HEADER.unpack(f.read(_HEADER.size))
        if header[0] != b"PK\x01\x02":
            break
        found += 1
        if found > max_entries:
            raise ZipLimitError(f"the archive holds more than {max_entries:,} entries, the limit")
        position += _HEADER.size + header[10] + header[11] + header[12]  # name, extra, comment
    return found
