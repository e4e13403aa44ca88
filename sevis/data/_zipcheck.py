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

__all__ = ["ZipLimitError", "check_members", "count_entries"]

_EOCD = struct.Struct("<4s4H2LH")  # signature, disks, entries here, entries, size, offset, comment
_LOCATOR64 = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 record, disks
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries here, entries, size, offset
_HEADER = struct.Struct("<4s6H3L5H2L")  # a central directory file header (46 bytes)
_LOCAL = struct.Struct("<4s5H3L2H")  # a local file header (30 bytes)
_MAX_COMMENT = 0xFFFF


class ZipLimitError(ValueError):
    """A central directory that holds more entries than allowed."""


def count_entries(f: BinaryIO, max_entries: int) -> int:
    """The number of entries in the zip ``f`` (a seekable binary file), read from its
    central directory without building them.

    The end records are found by :mod:`zipfile`'s own reader, so the directory counted
    here is the one ``zipfile.ZipFile`` will list; an archive whose records disagree
    with one another (a zip64 record elsewhere than its locator says, counts that differ
    from the plain record's, a declared count other than the entries there) is refused.

    Raises:
        ZipLimitError: more than ``max_entries`` entries, declared or found.
        zipfile.BadZipFile: no readable end-of-central-directory record, or records
            that disagree.
    """
    # NOTE zipfile's private reader, on purpose: the check must read the records the
    # listing will (it reads a zip64 record just before its locator whatever the plain
    # record says, and wherever the locator points).
    endrec = zipfile._EndRecData(f)  # type: ignore[attr-defined]
    if not endrec:
        raise zipfile.BadZipFile("no end-of-central-directory record (not a zip, or truncated)")
    entries, cd_size, cd_offset = endrec[4], endrec[5], endrec[6]
    # NOTE not endrec's own location: Python 3.13 sets it to the zip64 record's, 3.11 to
    # the plain record's. Where the plain record is, every version finds alike.
    eocd_at = _plain_record_at(f)
    end = eocd_at
    if endrec[0] == b"PK\x06\x06":  # zipfile took the counts from a zip64 record
        end = eocd_at - _LOCATOR64.size - _EOCD64.size
    if entries > max_entries:
        raise ZipLimitError(f"the archive declares {entries:,} entries, more than the limit of {max_entries:,}")
    if end != eocd_at:
        _check_zip64(f, eocd_at, end, entries, cd_size, cd_offset)
    if cd_size > end:
        raise zipfile.BadZipFile("the central directory is larger than the file (truncated or malformed)")
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
    if found != entries:
        raise zipfile.BadZipFile(f"the archive declares {entries:,} entries but its directory holds {found:,}")
    return found


def _plain_record_at(f: BinaryIO) -> int:
    """Where the end-of-central-directory record starts, found as zipfile finds it: at
    the very end when the archive has no comment, else the last signature in the tail."""
    f.seek(0, 2)
    size = f.tell()
    if size >= _EOCD.size:
        f.seek(size - _EOCD.size)
        last = f.read(_EOCD.size)
        if last[:4] == b"PK\x05\x06" and last[-2:] == b"\x00\x00":
            return size - _EOCD.size
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    f.seek(tail_start)
    at = f.read().rfind(b"PK\x05\x06")
    if at < 0:
        raise zipfile.BadZipFile("no end-of-central-directory record (not a zip, or truncated)")
    return tail_start + at


def _check_zip64(f: BinaryIO, eocd_at: int, record_at: int, entries: int, cd_size: int, cd_offset: int) -> None:
    """Refuse a zip64 archive whose three end records do not say the same thing."""
    f.seek(eocd_at)
    plain = _EOCD.unpack(f.read(_EOCD.size))
    f.seek(eocd_at - _LOCATOR64.size)
    _, _, pointed_at, _ = _LOCATOR64.unpack(f.read(_LOCATOR64.size))
    concat = record_at - cd_size - cd_offset  # bytes before the archive (a self-extractor's stub)
    agree = (
        pointed_at + concat == record_at
        and plain[4] in (entries, 0xFFFF)
        and plain[5] in (cd_size, 0xFFFFFFFF)
        and plain[6] in (cd_offset, 0xFFFFFFFF)
    )
    if not agree:
        raise zipfile.BadZipFile("the archive's end records disagree with one another (zip64 record and locator)")


def check_members(f: BinaryIO, infos: list[zipfile.ZipInfo], directory_at: int) -> None:
    """Refuse a zip whose members share bytes: two names for one entry, or entries whose
    data overlap (16 names over one compressed member unpack it 16 times), or data
    that runs into the central directory. Reads each local header's 30 bytes.

    Raises:
        zipfile.BadZipFile: the first such member, by its position (names are not echoed).
    """
    names = [info.orig_filename for info in infos]
    if len(set(names)) != len(names):
        raise zipfile.BadZipFile("the archive holds two entries of one name")
    spans = []
    for info in infos:
        f.seek(info.header_offset)
        local = f.read(_LOCAL.size)
        if len(local) != _LOCAL.size or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("an entry's local header is missing")
        name_length, extra_length = _LOCAL.unpack(local)[-2:]
        data_at = info.header_offset + _LOCAL.size + name_length + extra_length
        spans.append((info.header_offset, data_at + info.compress_size))
    spans.sort()
    for (start, stop), (following, _) in zip(spans, [*spans[1:], (directory_at, 0)], strict=True):
        if stop > following:
            raise zipfile.BadZipFile(
                f"the archive's entries overlap (the entry at byte {start:,} runs into the next); refused"
            )
