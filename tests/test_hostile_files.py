"""Files built to hurt, round two (issue 27): each class of attack found by reading what
the first round's defences assumed, reproduced with real files in real formats.

Images: decode work (progressive scans), aspect ratios that explode the resize, memory
per decoded image. Checkpoints: views that become more than their storage, safetensors
headers of countless tensors. Zips: end records that disagree, entries that share bytes.
Batch commands: files read whole, reports written in place, a damaged failures log.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import PHOTOS, make_zip, small_disk
from PIL import Image
from test_extract import rows, run_until_killed

import sevis
from sevis import ArchiveError, CheckpointError, ImageError
from sevis.cli import main
from sevis.data.archive import read_zip
from sevis.data.files import discover, iter_batches
from sevis.data.images import MAX_DECODED_BYTES, MAX_JPEG_SCANS, decode_image, jpeg_scans, model_view
from sevis.jobs.extraction import extract
from sevis.limits import Limits
from sevis.models._checkpoint import read_checkpoint, read_checkpoint_isolated
from sevis.report import write_report
from sevis.runs.sample import read_rows

MB = 1024**2
ROOT = Path(__file__).resolve().parent.parent
CONFIG = {"input_size": (3, 224, 224), "crop_pct": 0.875, "interpolation": "bilinear", "mean": (0.5,) * 3}
CONFIG["std"] = CONFIG["mean"]
pytestmark = pytest.mark.timeout(600, method="thread")


def encoded(image: Image.Image, format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def photograph(size: tuple[int, int] = (320, 240)) -> Image.Image:
    return Image.open(PHOTOS / "chelsea.png").convert("RGB").resize(size)


# -- images: decode work ---------------------------------------------------------------


def repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """``jpeg`` with its last scan (SOS segment and its entropy-coded data) repeated:
    each repetition is one more refinement pass over every coefficient."""
    assert jpeg[-2:] == b"\xff\xd9"
    last = jpeg.rfind(b"\xff\xda")
    return jpeg[:-2] + jpeg[last:-2] * times + b"\xff\xd9"


def test_scans_are_counted_from_the_segments():
    baseline = encoded(photograph(), "JPEG", quality=90)
    progressive = encoded(photograph(), "JPEG", quality=90, progressive=True)
    assert jpeg_scans(baseline) == 1
    # Pillow writes no thumbnail: every SOS marker in the file starts a scan
    assert jpeg_scans(progressive) == progressive.count(b"\xff\xda") >= 6
    assert jpeg_scans(repeat_last_scan(progressive, 10)) == jpeg_scans(progressive) + 10
    for cut in range(0, len(progressive), 997):  # truncated anywhere: a count, never an error
        assert 0 <= jpeg_scans(progressive[:cut]) <= jpeg_scans(progressive)
    assert jpeg_scans(encoded(photograph(), "PNG")) == 0
    # bytes between segments, which libjpeg skips with a warning, do not hide the scans after them
    garbled = progressive.replace(b"\xff\xda", b"\x00\x01\xff\xda")
    assert jpeg_scans(garbled) == jpeg_scans(progressive)
    assert jpeg_scans(memoryview(repeat_last_scan(garbled, 100))) == jpeg_scans(progressive) + 100
    with pytest.raises(ImageError, match="scans, more than the 64 allowed"):
        decode_image(repeat_last_scan(garbled, 100))
    # thousands of tiny segments would each be a step of the counting loop: refused
    comments = progressive[:2] + b"\xff\xfe\x00\x02" * 5000 + progressive[2:]
    with pytest.raises(ImageError, match="the JPEG has more than 4,096 segments"):
        decode_image(comments)


@pytest.mark.parametrize("window", [2, 3, 7, 64, 1001])
def test_scans_counted_a_window_at_a_time_are_the_whole_searchs(monkeypatch, window):
    """Markers and runs of 0xFF fill on every window edge: the same count as one search."""
    import sevis.data.images as images

    progressive = encoded(photograph((64, 48)), "JPEG", quality=90, progressive=True)
    filled = progressive.replace(b"\xff\xda", b"\xff" * 9 + b"\xda")  # fill bytes before each scan
    files = [progressive, filled, repeat_last_scan(filled, 5), progressive.replace(b"\xff\xda", b"\x00\x01\xff\xda")]
    files += [filled[:cut] for cut in range(0, len(filled), 331)]  # truncated anywhere
    expected = [jpeg_scans(f) for f in files]  # one search: the files are under a megabyte
    assert expected[1] == expected[0] and expected[2] == expected[0] + 5
    monkeypatch.setattr(images, "_SEARCH_WINDOW", window)
    assert [jpeg_scans(f) for f in files] == expected


def test_counting_the_scans_of_stuffed_bytes_lets_other_threads_run():
    """64 MB of stuffed 0xFF bytes take a second or two to search; the search used to hold
    the interpreter's lock throughout, so the server's other threads stood still."""
    import threading
    import time

    stuffed = b"\xff\xd8\xff\xda\x00\x02" + b"\xff\x00" * (32 * MB) + b"\xff\xd9"
    ticks: list[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    start = time.perf_counter()
    assert jpeg_scans(stuffed) == 1
    took = time.perf_counter() - start
    done.set()
    ticker.join()
    during = [t for t in ticks if t >= start]
    gaps = np.diff([start, *during, start + took])
    assert took > 0.2 and gaps.max() < took / 3, (took, gaps.max())


def test_a_progressive_jpeg_whose_last_scan_repeats_is_refused_before_decoding():
    progressive = encoded(photograph((64, 48)), "JPEG", quality=90, progressive=True)
    decode_image(progressive)  # the photograph itself is fine
    hostile = repeat_last_scan(progressive, 3000)
    assert len(hostile) < 2 * MB
    with pytest.raises(ImageError, match=r"the JPEG has 3,0\d\d scans, more than the 64 allowed"):
        decode_image(hostile)
    decode_image(repeat_last_scan(progressive, MAX_JPEG_SCANS - jpeg_scans(progressive)))  # at the limit


def test_a_phone_mpo_whose_first_picture_repeats_its_last_scan_is_refused():
    """Pillow names a JPEG with a multi-picture index MPO: the scans are counted too."""
    buffer = io.BytesIO()
    picture = photograph((64, 48))
    picture.save(buffer, "MPO", save_all=True, append_images=[picture], progressive=True)
    mpo = buffer.getvalue()
    end = mpo.find(b"\xff\xd9")  # the first picture's end
    last = mpo.rfind(b"\xff\xda", 0, end)
    hostile = mpo[:end] + mpo[last:end] * 3000 + mpo[end:]
    assert Image.open(io.BytesIO(hostile)).format == "MPO"
    decode_image(mpo)
    with pytest.raises(ImageError, match=r"the JPEG has 3,0\d\d scans, more than the 64 allowed"):
        decode_image(hostile)


def test_scans_allowed_shrink_as_pixels_grow():
    """Work is scans x pixels: a 16-megapixel JPEG may have 48 scans, not 64."""
    big = encoded(photograph((4000, 4000)), "JPEG", quality=70, progressive=True)
    hostile = repeat_last_scan(big, 49 - jpeg_scans(big))
    with pytest.raises(ImageError, match="the JPEG has 49 scans, more than the 48 allowed for 4000 x 4000"):
        decode_image(hostile)


# -- images: the resize ----------------------------------------------------------------


def test_an_image_far_longer_than_wide_is_refused_and_never_resized():
    """1 x 100,000 pixels is a 475-byte PNG; resized to a 256-pixel short side it
    would be 26 GB."""
    needle = encoded(Image.new("L", (1, 100_000)), "PNG")
    assert len(needle) < 1000
    with pytest.raises(ImageError, match=r"1 x 100000 pixels, longer than 50 times"):
        decode_image(needle)
    with pytest.raises(ImageError, match="too elongated to resize"):
        model_view(CONFIG, Image.new("RGB", (1, 100_000)))
    assert model_view(CONFIG, decode_image(encoded(Image.new("RGB", (4000, 80)), "PNG"))).size == (224, 224)


# -- images: memory --------------------------------------------------------------------

MEASURE = r"""
import re, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from sevis.data.images import decode_image
def status(field):  # NOTE not ru_maxrss, which a child inherits from its parent across exec
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read())[1]) * 1024
data = Path(sys.argv[1]).read_bytes()
decode_image(open({small!r}, "rb").read())  # every import and first call done
before = status("VmRSS")
image = decode_image(data)
print(image.size[0] * image.size[1], status("VmHWM") - before)
"""


def huge(mode: str) -> Image.Image:
    """A 64-megapixel image (8000 x 8000) of ``mode`` with a gradient in it."""
    ramp = np.linspace(0, 1, 8000, dtype=np.float32)[None, :].repeat(8000, 0)
    if mode == "I;16":
        return Image.fromarray((ramp * 65535).astype(np.uint16))
    if mode == "P":
        image = Image.frombytes("P", (8000, 8000), (ramp * 255).astype(np.uint8).tobytes())
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
        return image
    if mode == "RGBA":
        grey = (ramp * 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, grey, grey, 255 - grey], axis=-1), mode="RGBA")
    return Image.fromarray(ramp, mode="F")


@pytest.mark.slow
@pytest.mark.parametrize("mode, format", [("I;16", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("F", "TIFF")])
def test_decoding_a_64_megapixel_image_holds_at_most_twice_the_decoded_limit(tmp_path, mode, format):
    """16-bit, palette with transparency, RGBA and float images of 64 megapixels cost
    1.3-1.5 GB each when converted whole through float64 and RGBA; strip by strip they
    stay within 2 x MAX_DECODED_BYTES (the decoded image and its RGB copy)."""
    path = tmp_path / f"huge.{format.lower()}"
    options = {"transparency": 0} if mode == "P" else {}
    huge(mode).save(path, format, compress_level=1, **options) if format == "PNG" else huge(mode).save(path, format)
    small = tmp_path / "small.png"
    photograph().save(small)
    script = MEASURE.format(root=str(ROOT), small=str(small))
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    pixels, grown = map(int, done.stdout.split())
    assert pixels == 64_000_000
    print(f"{mode} {format}: {path.stat().st_size / MB:.1f} MB file, peak +{grown / MB:.0f} MB decoding")
    assert grown <= 2 * MAX_DECODED_BYTES + 64 * MB, f"{grown / MB:.0f} MB"


def test_strip_conversions_equal_whole_image_conversions():
    """The strip-by-strip conversions give the pixels the whole-image ones gave (1,100
    rows: three strips, the last one partial)."""
    rng = np.random.default_rng(27)
    sixteen = rng.integers(0, 65536, (1100, 300), dtype=np.uint16)
    sixteen[0, :4] = [0, 65535, 128, 257 * 3 + 128]  # the edges of the rounding
    got = np.asarray(decode_image(encoded(Image.fromarray(sixteen), "PNG")))[..., 0]
    assert np.array_equal(got, (sixteen.astype(np.float64) * (255 / 65535)).clip(0, 255).round().astype(np.uint8))
    floats = rng.normal(size=(1100, 300)).astype(np.float32)
    got = np.asarray(decode_image(encoded(Image.fromarray(floats, mode="F"), "TIFF")))[..., 0]
    low, high = floats.astype(np.float64).min(), floats.astype(np.float64).max()
    assert np.array_equal(got, ((floats.astype(np.float64) - low) * (255 / (high - low))).round().astype(np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (1100, 300, 4), dtype=np.uint8), mode="RGBA")
    whole = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    assert np.array_equal(np.asarray(decode_image(encoded(rgba, "PNG"))), np.asarray(whole))
    palette = rgba.convert("P")
    png = encoded(palette, "PNG", transparency=3)
    reference = Image.open(io.BytesIO(png)).convert("RGBA")
    whole = Image.alpha_composite(Image.new("RGBA", reference.size, (255, 255, 255, 255)), reference).convert("RGB")
    assert np.array_equal(np.asarray(decode_image(png)), np.asarray(whole))


def test_more_decoded_bytes_than_the_limit_are_refused_from_the_header(tmp_path):
    """With the pixel limit raised, the decoded-bytes limit still holds: 8,200 x 8,200
    RGB is 67 megapixels and 269 MB as Pillow keeps it."""
    data = encoded(Image.new("RGB", (8200, 8200)), "PNG", compress_level=1)
    with pytest.raises(ImageError, match=r"decodes to 25[67] MB, more than the limit of 256 MB"):
        decode_image(data, max_pixels=100_000_000)


# -- checkpoints -----------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_a_view_that_repeats_one_stored_float_is_refused_before_it_is_copied(tmp_path, legacy):
    """One float stored, a billion read (stride 0): a 1.6 KB file that became 1-3 GB in
    the worker and in the temporary folder."""
    path = tmp_path / "stride0.pth"
    torch.save({"w": torch.zeros(1).expand(1_000_000_000)}, path, _use_new_zipfile_serialization=not legacy)
    assert path.stat().st_size < 4000
    for read in (read_checkpoint, read_checkpoint_isolated):
        with pytest.raises(CheckpointError, match=r"tensor w is a view that repeats its storage \(1,000,000,000"):
            read(path)


def test_views_of_one_storage_are_counted_whole(tmp_path):
    base = torch.zeros(2 * MB // 4)  # 2 MB stored once
    path = tmp_path / "shared.pth"
    torch.save({f"w{i}": base[:] for i in range(40)}, path)  # 80 MB once each view is copied
    assert path.stat().st_size < 3 * MB
    with pytest.raises(CheckpointError, match="its tensors hold more than 64 MB .* once views are counted"):
        read_checkpoint(path, Limits(checkpoint_bytes=64 * MB))
    assert len(read_checkpoint(path).state_dict) == 40  # within the default limit


def test_a_safetensors_header_is_counted_before_it_is_parsed(tmp_path):
    """400,000 empty tensors were a 23 MB file that passed the 50,000-tensor limit."""
    from safetensors.torch import save_file

    path = tmp_path / "many.safetensors"
    save_file({f"t{i}": torch.zeros(0) for i in range(2_001)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="it holds 2,001 tensors, more than the limit of 2,000"):
        read_checkpoint(path, Limits(tensors=2_000))
    assert len(read_checkpoint(path, Limits(tensors=2_001)).state_dict) == 2_001  # the metadata is no tensor


# -- zips ------------------------------------------------------------------------------


def directory_of(data: bytes) -> tuple[bytes, bytes, int]:
    """A zip's (files and local headers, central directory, its offset)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        start = archive.start_dir
    eocd = data.rfind(b"PK\x05\x06")
    return data[:start], data[start:eocd], start


def headers(directory: bytes) -> list[bytes]:
    """The central directory's file headers, one by one."""
    out, at = [], 0
    while at < len(directory):
        lengths = struct.unpack_from("<3H", directory, at + 28)
        size = 46 + sum(lengths)
        out.append(directory[at : at + size])
        at += size
    return out


def end_record(entries: int, size: int, offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, size, offset, 0)


def zip64_end(entries: int, size: int, offset: int, record_at: int) -> bytes:
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, offset)
    return record + struct.pack("<4sLQL", b"PK\x06\x07", 0, record_at, 1)


def test_a_zip64_record_is_read_where_zipfile_reads_it():
    """The plain end record says 2 entries; a zip64 record before it, which zipfile
    reads whatever the plain record says, lists 30. The old check counted the 2."""
    files, directory, start = directory_of(make_zip({f"c/{i}.txt": b"x" for i in range(30)}))
    small = b"".join(headers(directory)[:2])
    body = files + small + directory  # the small directory first, then the whole one
    record_at = len(body)
    hostile = body + zip64_end(30, len(directory), start + len(small), record_at) + end_record(2, len(small), start)
    assert len(zipfile.ZipFile(io.BytesIO(hostile)).infolist()) == 30  # what zipfile lists
    with pytest.raises(ArchiveError, match="declares 30 entries, more than the limit of 10"):
        read_zip(hostile, limits=Limits(zip_files=10))
    with pytest.raises(ArchiveError, match="end records disagree"):
        read_zip(hostile, limits=Limits(zip_files=100))


def test_a_zip64_locator_pointing_elsewhere_is_refused_and_an_honest_one_read():
    files, directory, start = directory_of(make_zip({f"c/{i}.txt": b"x" for i in range(3)}))
    body = files + directory
    honest = body + zip64_end(3, len(directory), start, len(body)) + end_record(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    assert [f.name for f in read_zip(honest)[0]] == ["c/0.txt", "c/1.txt", "c/2.txt"]
    # a decoy record claiming one entry where the locator points; zipfile reads the one
    # just before the locator (3 entries); the old check read the decoy and counted none
    decoy = zip64_end(1, 0, 0, 0)[:56]
    body = files + decoy + directory
    pointed = body + zip64_end(3, len(directory), start + len(decoy), len(files))
    pointed += end_record(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    assert len(zipfile.ZipFile(io.BytesIO(pointed)).infolist()) == 3
    with pytest.raises(ArchiveError, match="end records disagree"):
        read_zip(pointed)


def test_entries_of_one_name_or_sharing_one_member_are_refused(tmp_path):
    """16 directory entries over one compressed member: a 63 KB zip that held 1 GB."""
    bomb = make_zip({"c/a.png": bytes(64 * MB - 1)})
    files, directory, start = directory_of(bomb)
    repeated = directory * 16
    hostile = files + repeated + end_record(16, len(repeated), start)
    assert len(hostile) < 100_000
    with pytest.raises(ArchiveError, match="two entries of one name"):
        read_zip(hostile)
    # distinct names, one member: a stored entry whose content is another entry, whole
    inner = make_zip({"c/b.png": bytes(MB)})
    inner_files, inner_directory, _ = directory_of(inner)
    outer_files, outer_directory, outer_start = directory_of(
        make_zip({"c/a.png": b"\0" * 7 + inner_files}, zipfile.ZIP_STORED)
    )
    name_length, extra_length = struct.unpack_from("<2H", outer_files, 26)
    nested_at = 30 + name_length + extra_length + 7  # where b.png's local header starts inside a.png
    b_header = bytearray(inner_directory)
    struct.pack_into("<L", b_header, 42, nested_at)
    both = outer_directory + bytes(b_header)
    hostile = outer_files + both + end_record(2, len(both), outer_start)
    assert sorted(zipfile.ZipFile(io.BytesIO(hostile)).namelist()) == ["c/a.png", "c/b.png"]
    with pytest.raises(ArchiveError, match="entries overlap"):
        read_zip(hostile)
    path = tmp_path / "overlap.zip"
    path.write_bytes(hostile)
    with pytest.raises(sevis.DataError, match="entries overlap"):
        discover(path)


# -- batch commands --------------------------------------------------------------------


def test_a_sparse_three_gigabyte_image_is_reported_without_being_read(tmp_path, photos):
    folder = tmp_path / "data"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "chelsea.png").write_bytes(photos["chelsea.png"])
    with open(folder / "cat" / "sparse.png", "wb") as f:
        f.write(photos["coffee.png"][:64])
        f.truncate(3 * 1024**3)
    assert (folder / "cat" / "sparse.png").stat().st_blocks * 512 < MB  # nothing on disk
    batches = list(iter_batches(folder, discover(folder), CONFIG, workers=0))
    failures = [f for b in batches for f in b.failures]
    assert [i.path for b in batches for i in b.items] == ["cat/chelsea.png"]
    assert [(f.name, f.reason) for f in failures] == [
        ("cat/sparse.png", "3,072 MB, more than the limit of 64 MB for an image file (SEVIS_MAX_IMAGE_MB); not read")
    ]
    archive = tmp_path / "data.zip"
    archive.write_bytes(make_zip({"cat/chelsea.png": photos["chelsea.png"], "cat/coffee.png": photos["coffee.png"]}))
    small, large = sorted(["chelsea.png", "coffee.png"], key=lambda name: len(photos[name]))
    limits = Limits(image_bytes=len(photos[small]))  # a zip's member, by its declared size
    batches = list(iter_batches(archive, discover(archive), CONFIG, workers=0, limits=limits))
    assert [i.path for b in batches for i in b.items] == [f"cat/{small}"]
    assert [f.name for b in batches for f in b.failures] == [f"cat/{large}"]


def test_a_report_on_a_full_disk_leaves_the_previous_page_whole(tiny_se, image_folder, tmp_path):
    run = extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    with small_disk(tmp_path / "disk", "16m") as disk:
        page = disk / "report.html"
        write_report(run, page)
        before = page.read_bytes()
        with open(disk / "filler", "wb", buffering=0) as f, pytest.raises(OSError, match="No space left"):
            while True:  # fill the disk
                f.write(bytes(64 * 1024))
        with pytest.raises(OSError, match="No space left"):
            write_report(run, page, classes=["cat", "cup"])
        assert page.read_bytes() == before  # the previous page, whole
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "report.html"]  # no part left


def test_a_cut_last_line_in_the_failures_log_is_repaired_and_its_image_tried_again(tiny_se, image_folder, tmp_path):
    """A kill or a full disk during the append leaves half a line: every later --resume
    died with a JSONDecodeError. The half line is cut off and its image tried again."""
    whole = extract(tiny_se, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False)
    out = tmp_path / "run.parquet"
    done = run_until_killed(image_folder, out, "SIGKILL", after=1 + 3, part_size=1)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    log = out.with_name(out.name + ".parts") / "failures.jsonl"
    log.write_text('{"path": "vehicle/broken.jpg", "rea')  # the append, cut short
    extract(tiny_se, image_folder, out, batch_size=1, workers=0, resume=True, progress=False)
    assert sevis.read_run(out).failures == sevis.read_run(whole).failures
    assert [r["path"] for r in rows(out)] == [r["path"] for r in rows(whole)]

    damaged = tmp_path / "damaged.parquet"
    done = run_until_killed(image_folder, damaged, "SIGKILL", after=1 + 3, part_size=1)
    parts = damaged.with_name(damaged.name + ".parts")
    kept = sorted(p.name for p in parts.iterdir())
    (parts / "failures.jsonl").write_text('not a record\n{"path": "x.jpg", "reason": "r"}\n')
    with pytest.raises(sevis.RunError, match=r"line 1 of .*failures.jsonl is not a failure record; delete that line"):
        extract(tiny_se, image_folder, damaged, batch_size=1, workers=0, resume=True, progress=False)
    assert sorted(p.name for p in parts.iterdir()) == sorted({*kept, "failures.jsonl"})  # nothing thrown away


# -- saved runs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, image_folder) -> Path:
    model = sevis.load_model("tiny_se", "untrained")
    return extract(model, image_folder, tmp_path_factory.mktemp("run") / "run.parquet", workers=0, progress=False)


def with_metadata(run: Path, out: Path, metadata: bytes) -> Path:
    table = pq.read_table(run)
    pq.write_table(table.replace_schema_metadata({b"sevis": metadata}), out)
    return out


SHAPES = {
    "deep": b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json.loads
    "a list": b"[1, 2]",  # AttributeError
    "no model": b'{"weights": "w"}',  # KeyError
    "text as a number": None,  # ValueError / TypeError deeper in
    "unknown kind": None,
    "missing column": None,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_metadata_of_the_wrong_shape_is_a_run_error_everywhere(small_run, tmp_path, shape, capsys):
    good = json.loads(pq.read_schema(small_run).metadata[b"sevis"])
    text = SHAPES[shape]
    if shape == "text as a number":
        text = json.dumps(good | {"images": "many", "data_config": good["data_config"] | {"crop_pct": "x"}}).encode()
    elif shape == "unknown kind":
        text = json.dumps(good | {"attention": {"nokind": ["SE_4_6"]}}).encode()
    elif shape == "missing column":
        text = json.dumps(good | {"attention": {"se": ["SE_9_9"]}}).encode()
    path = with_metadata(small_run, tmp_path / "odd.parquet", text)
    with pytest.raises(sevis.RunError, match=r"^odd\.parquet: its metadata|^odd\.parquet: it was made with"):
        sevis.read_run(path, cache=False)
    assert main(["report", str(path), "--out", str(tmp_path / "page.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sevis report: odd.parquet: ") and "Traceback" not in err and len(err) < 400


@pytest.mark.parametrize("dictionary", [True, False])
def test_a_label_longer_than_the_limit_is_refused_before_it_is_decoded(small_run, tmp_path, dictionary):
    """800 rows whose label is one 1 MB string, dictionary-encoded and compressed: a
    small file that decoded to gigabytes of strings."""
    table = pq.read_table(small_run)
    rows = table.take([i % table.num_rows for i in range(800)])
    label = pa.array(["x" * MB] * 800).dictionary_encode() if dictionary else pa.array(["x" * MB] * 800)
    rows = rows.set_column(rows.schema.get_field_index("label"), "label", label.cast(pa.string()))
    path = tmp_path / "long.parquet"
    pq.write_table(rows, path, use_dictionary=dictionary, compression="zstd")
    assert path.stat().st_size < (MB if dictionary else 40 * MB)
    with pytest.raises(sevis.RunError, match="long.parquet: refused, a label in it is longer than 4,096 bytes"):
        sevis.read_run(path, cache=False)
    with pytest.raises(sevis.RunError, match="refused, a label in it is longer"):
        read_rows(path, "se")


# -- paths -----------------------------------------------------------------------------


def test_a_fifo_where_a_run_or_checkpoint_should_be_is_refused_without_waiting(tmp_path):
    folder = tmp_path / "allowed"
    folder.mkdir()
    os.mkfifo(folder / "run.parquet")
    os.mkfifo(folder / "w.pth")
    with pytest.raises(sevis.RunError, match=r"run.parquet: not a regular file; not read"):
        sevis.read_run(folder / "run.parquet", within=[str(folder)])
    with pytest.raises(CheckpointError, match=r"w.pth: not a regular file; not read"):
        read_checkpoint(folder / "w.pth", within=[str(folder)])
    with pytest.raises(CheckpointError, match=r"w.pth: not a regular file; not read"):
        read_checkpoint_isolated(folder / "w.pth", within=[str(folder)])


def test_a_file_swapped_for_a_link_after_its_name_was_checked_is_not_read(tmp_path, small_run, senet_file):
    """The server checks the name, then a reader opens it: whatever the name points to
    when it is opened is checked again, where it is opened."""
    folder, outside = tmp_path / "allowed", tmp_path / "private"
    folder.mkdir()
    outside.mkdir()
    shutil.copy(small_run, outside / "secret.parquet")
    shutil.copy(senet_file, outside / "secret.pth")
    for name, read, error in [
        ("run.parquet", sevis.read_run, sevis.RunError),
        ("w.pth", read_checkpoint, CheckpointError),
        ("w.pth", read_checkpoint_isolated, CheckpointError),
    ]:
        target = folder / name
        target.write_bytes(b"checked")  # what the name check saw
        target.unlink()
        target.symlink_to(outside / f"secret{target.suffix}")  # swapped in before the read
        with pytest.raises(error, match=rf"{name}: outside the folders allowed; not read"):
            read(target, within=[str(folder)])
        target.unlink()
    # a link to a file inside the folders is read
    (folder / "real.parquet").write_bytes(small_run.read_bytes())
    (folder / "link.parquet").symlink_to(folder / "real.parquet")
    assert sevis.read_run(folder / "link.parquet", within=[str(folder)], cache=False).metadata.images == 7


def test_a_run_read_inside_the_folders_is_read_again_only_as_the_same_file(tmp_path, small_run, monkeypatch):
    """The rows a page reads later (the Channels page's layer, a large run's chance band)
    come from the file the statistics came from, opened again inside the folders: a link
    to outside, a FIFO or another file in its place is a RunError, not read."""
    import sevis.runs.reader as reader

    monkeypatch.setattr(reader, "SAMPLE_ROWS", 0)  # as a large run: its bands read the file again
    folder, outside = tmp_path / "allowed", tmp_path / "private"
    folder.mkdir()
    outside.mkdir()
    target = folder / "run.parquet"
    shutil.copy(small_run, target)
    run = sevis.read_run(target, within=[str(folder)], cache=False)
    layer = next(iter(run.metadata.layer_kinds))
    rows = list(run.iter_layer(layer))
    assert sum(len(r.labels) for r in rows) == run.metadata.images == 7
    assert run.null_bands("se").keys() == set(run.stats["se"].layers)

    table = pq.read_table(small_run)
    pq.write_table(table.slice(0, 3), outside / "secret.parquet")  # a run of the same shape
    swaps = {
        "outside the folders allowed; not read": lambda: target.symlink_to(outside / "secret.parquet"),
        "not a regular file; not read": lambda: os.mkfifo(target),
        "changed since it was read; open it again": lambda: shutil.copy(outside / "secret.parquet", target),
    }
    for message, swap in swaps.items():
        again = sevis.read_run(target, within=[str(folder)], cache=False)
        target.unlink()
        swap()
        with pytest.raises(sevis.RunError, match=f"run.parquet:? {message}"):
            list(again.iter_layer(layer))
        with pytest.raises(sevis.RunError, match=f"run.parquet:? {message}"):
            again.null_bands("se")
        target.unlink()
        shutil.copy(small_run, target)


@pytest.mark.parametrize("typed", ["w\0.pth", "x" * 300 + ".pth", "a/" * 2100 + "w.pth"])
def test_names_that_are_no_path_are_a_server_file_error(tmp_path, monkeypatch, typed):
    from sevis.app.services import ServerFileError, server_file

    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    with pytest.raises(ServerFileError, match="not a path the dashboard opens"):
        server_file(typed)
    with pytest.raises(CheckpointError, match="cannot be opened"):
        read_checkpoint(tmp_path / typed, within=[str(tmp_path)])


def test_a_runs_own_source_is_read_back_only_inside_the_folders_allowed(small_run, image_folder, tmp_path):
    run = sevis.read_run(small_run, cache=False)
    name = "cat/chelsea.png"
    assert sevis.run_image(run, name) == (image_folder / name).read_bytes()
    with pytest.raises(sevis.RunError, match="outside the folders this server reads"):
        sevis.run_image(run, name, within=[str(tmp_path)])
    assert sevis.run_image(run, name, within=[str(image_folder.parent)]) == (image_folder / name).read_bytes()
    (tmp_path / "outside.png").write_bytes((image_folder / name).read_bytes())
    (image_folder / "cat" / "link.png").symlink_to(tmp_path / "outside.png")  # a link out of the source
    try:
        with pytest.raises(sevis.RunError, match="cat/link.png: outside the folders allowed of imagefolder"):
            sevis.run_image(run, "cat/link.png")
    finally:
        (image_folder / "cat" / "link.png").unlink()


def test_the_zip64_check_holds_whichever_location_zipfile_reports(monkeypatch, tmp_path):
    """Python 3.13's zipfile reports the zip64 record's position as the end record's
    location, 3.11's the plain record's: a PyTorch checkpoint (zip64 end records) must
    pass with either (the Docker image's Python refused the real weights file)."""
    from sevis.data._zipcheck import count_entries

    path = tmp_path / "w.pth"
    torch.save({f"w{i}": torch.zeros(3) for i in range(5)}, path)
    data = path.read_bytes()
    assert b"PK\x06\x06" in data  # PyTorch writes zip64 end records
    expected = len(zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert count_entries(io.BytesIO(data), 100) == expected
    reader = zipfile._EndRecData

    def as_python_3_13(f):
        endrec = reader(f)
        if endrec and endrec[0] == b"PK\x06\x06":
            endrec[9] -= 20 + 56  # the zip64 record's position
        return endrec

    monkeypatch.setattr(zipfile, "_EndRecData", as_python_3_13)
    assert count_entries(io.BytesIO(data), 100) == expected
