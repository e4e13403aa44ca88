"""Zips of class folders."""

from __future__ import annotations

import pytest
from conftest import make_zip

import sevis
from sevis import ArchiveError
from sevis.limits import Limits


def test_labels_are_folder_names_and_junk_is_skipped(photos):
    data = make_zip(
        {
            "set/cat/b.png": photos["chelsea.png"],
            "set/cat/a.png": photos["astronaut.png"],
            "set/cup/c.png": photos["coffee.png"],
            "loose.jpg": photos["rocket.jpg"],
            "set/cup/.hidden.png": b"x",
            "__MACOSX/set/cup/._c.png": b"x",
            "set/empty/": b"",
        }
    )
    files, failures = sevis.read_zip(data)
    assert [(f.name, f.label) for f in files] == [
        ("loose.jpg", None),
        ("set/cat/a.png", "cat"),
        ("set/cat/b.png", "cat"),
        ("set/cup/c.png", "cup"),
    ]
    assert files[1].data == photos["astronaut.png"] and failures == []


def test_corrupt_member_is_reported_and_the_rest_kept(photos):
    data = bytearray(make_zip({"a/x.png": photos["chelsea.png"], "b/y.png": photos["coffee.png"]}))
    start = data.find(b"IDAT", data.find(b"b/y.png"))  # inside the second member's data
    data[start : start + 64] = bytes(64)
    files, failures = sevis.read_zip(bytes(data))
    assert [f.name for f in files] == ["a/x.png"]
    assert [f.name for f in failures] == ["b/y.png"] and "cannot be extracted" in failures[0].reason


def test_limits_and_non_zips(photos):
    with pytest.raises(ArchiveError, match="not a readable zip archive"):
        sevis.read_zip(b"PK but not really")
    many = make_zip({f"c/{i}.png": b"x" for i in range(5)})
    with pytest.raises(ArchiveError, match="declares 5 entries, more than the limit of 4"):
        sevis.read_zip(many, limits=Limits(zip_files=4))
    bomb = make_zip({"c/zeros.png": bytes(50 * 1024**2)})  # 50 MB of zeros, tiny compressed
    assert len(bomb) < 1024**2
    with pytest.raises(ArchiveError, match="unpacks to 50 MB, more than the limit of 10 MB"):
        sevis.read_zip(bomb, limits=Limits(zip_total_bytes=10 * 1024**2))
