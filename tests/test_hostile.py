"""Files built to hurt: checkpoints, zips and paths that once froze or bloated the server.

Each test reproduces a finding of the adversarial review (issue 14) with a real file
in a real layout: PyTorch's zip format and its legacy (pre-1.6) pickle format, which
the SENet and SGE authors' checkpoints use.
"""

from __future__ import annotations

import io
import os
import pickletools
import struct
import time
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

import sevis
from sevis import ArchiveError, CheckpointError
from sevis.limits import Limits
from sevis.models._checkpoint import read_checkpoint, read_checkpoint_isolated

MB = 1024**2
pytestmark = pytest.mark.timeout(300, method="thread")  # a hang fails the run, not waits on it


def tuple_bomb(depth: int, as_key: bool = False, width: int = 2) -> bytes:
    """``{'state_dict': t}`` (or ``{'state_dict': {t: 1}}``) where ``t`` is a tuple holding
    the previous level ``width`` times, ``depth`` levels deep: a few bytes per level,
    width**depth objects once the shared references are unfolded (printing, hashing,
    comparing)."""
    ops = bytearray(b"\x80\x02}")  # PROTO 2, EMPTY_DICT
    ops += b"X" + struct.pack("<I", 10) + b"state_dict"  # BINUNICODE
    if as_key:
        ops += b"}"
    ops += b")r" + struct.pack("<I", 0)  # EMPTY_TUPLE, LONG_BINPUT 0
    for i in range(1, depth + 1):
        # the previous level is on the stack; LONG_BINGET it again, TUPLE1/TUPLE2, LONG_BINPUT
        ops += (b"j" + struct.pack("<I", i - 1)) * (width - 1) + {1: b"\x85", 2: b"\x86"}[width]
        ops += b"r" + struct.pack("<I", i)
    if as_key:
        ops += b"K\x01s"  # BININT1 1, SETITEM
    ops += b"s."  # SETITEM, STOP
    return bytes(ops)


def zip_checkpoint(pickled: bytes) -> bytes:
    """A PyTorch zip checkpoint whose object is ``pickled``."""
    saved = io.BytesIO()
    torch.save({}, saved)
    source, out = zipfile.ZipFile(saved), io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, pickled if info.filename.endswith("/data.pkl") else source.read(info))
    return out.getvalue()


def legacy_checkpoint(pickled: bytes, state: object | None = None) -> bytes:
    """A legacy checkpoint (``_use_new_zipfile_serialization=False``) whose object is
    ``pickled`` (or, with ``pickled`` empty, ``state`` saved as it is)."""
    saved = io.BytesIO()
    torch.save({} if state is None else state, saved, _use_new_zipfile_serialization=False)
    data = saved.getvalue()
    if not pickled:
        return data
    f, bounds = io.BytesIO(data), []
    for _ in range(5):  # magic number, protocol, system info, the object, storage keys
        start = f.tell()
        for _ in pickletools.genops(f):
            pass
        bounds.append((start, f.tell()))
    return data[: bounds[3][0]] + pickled + data[bounds[3][1] :]


LAYOUTS = {"zip": zip_checkpoint, "legacy": legacy_checkpoint}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("as_key", [False, True])
def test_the_bomb_files_are_real_checkpoints(tmp_path, layout, as_key):
    path = write(tmp_path, "bomb.pth", LAYOUTS[layout](tuple_bomb(3, as_key)))
    loaded = torch.load(path, weights_only=True)  # PyTorch itself reads them
    inner = next(iter(loaded["state_dict"])) if as_key else loaded["state_dict"]
    assert inner == ((((), ()), ((), ())), (((), ()), ((), ())))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("as_key", [False, True])
@pytest.mark.parametrize(
    ("depth", "width", "said"),
    [
        (10, 2, "no state dict"),  # harmless: 2,047 objects unfolded
        (20, 2, "no state dict"),  # a million: still read, never printed
        (24, 2, "unfold into more than 10,000,000"),
        (60, 2, "unfold into more than 10,000,000"),  # the review's 1.2 KB file
        (300, 1, "nested more than 32 deep"),  # no sharing, just depth
    ],
)
def test_tuple_bombs_are_read_or_refused_with_a_short_message(tmp_path, layout, as_key, depth, width, said):
    path = write(tmp_path, f"bomb{depth}.pth", LAYOUTS[layout](tuple_bomb(depth, as_key, width)))
    with pytest.raises(CheckpointError) as caught:
        sevis.load_model("se_resnet50", path, check=False)
    message = str(caught.value)
    assert said in message and message.startswith(f"bomb{depth}.pth: ")
    assert len(message) < 400, message


def test_legacy_layouts_of_both_papers_load(tmp_path, senet_state, sge_state):
    from conftest import pytorchinsight_checkpoint

    se = write(tmp_path, "se_resnet50-ce0d4300.pth", legacy_checkpoint(b"", senet_state))
    sge = write(tmp_path, "sge_resnet50.pth.tar", legacy_checkpoint(b"", pytorchinsight_checkpoint(sge_state)))
    for path, name, state in ((se, "se_resnet50", senet_state), (sge, "sge_resnet50", sge_state)):
        for isolate in (False, True):
            model = sevis.load_model(name, path, check=False, isolate=isolate)
            loaded = model.state_dict()
            assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_isolated_reading_gives_the_same_tensors_and_checksum(sge_file):
    here, there = read_checkpoint(sge_file), read_checkpoint_isolated(sge_file)
    assert there.sha256 == here.sha256
    assert there.state_dict.keys() == here.state_dict.keys()
    assert all(
        torch.equal(there.state_dict[k], v) and there.state_dict[k].dtype == v.dtype for k, v in here.state_dict.items()
    )


def test_a_worker_out_of_time_or_memory_is_a_message_not_a_crash(senet_file):
    with pytest.raises(CheckpointError, match=r"took longer than 0\.5 s \(SEVIS_PARSE_TIMEOUT_S\)"):
        read_checkpoint_isolated(senet_file, Limits(parse_seconds=0.5))
    # 200 MB of data segment: not even torch fits, the worker dies; this process does not
    with pytest.raises(CheckpointError, match=r"(needs more than|stopped \(exit \d+\) within its limits of) 200 MB"):
        read_checkpoint_isolated(senet_file, Limits(parse_memory_bytes=200 * MB))


def reading_worker_niceness() -> int | None:
    """The niceness of this process's checkpoint-reading worker once it has changed it
    (from /proc: its parent is this process, its command runs ``_worker()``), or None."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()  # field 3 (state) onwards
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        parent, nice = int(after_name[1]), int(after_name[16])  # fields 4 and 19
        if parent == os.getpid() and b"_worker()" in command and nice != os.nice(0):
            return nice
    return None


@pytest.mark.parametrize(("setting", "steps"), [(None, 10), ("15", 15)])
def test_the_reading_worker_yields_the_cpu_as_far_as_it_is_told(sge_file, monkeypatch, setting, steps):
    if setting is None:
        monkeypatch.delenv("SEVIS_PARSE_NICE", raising=False)
    else:
        monkeypatch.setenv("SEVIS_PARSE_NICE", setting)
    seen = set()
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_checkpoint_isolated, sge_file)
        while not reading.done():
            if (nice := reading_worker_niceness()) is not None:
                seen.add(nice)
            time.sleep(0.005)
        assert reading.result().state_dict
    assert seen == {min(os.nice(0) + steps, 19)}  # steps below this process, Linux's floor at 19


def test_the_reading_workers_niceness_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEVIS_PARSE_NICE", "0")
    assert Limits.from_env().parse_nice == 0  # as the server: the one setting that may be 0
    for wrong in ("20", "2.5", "-1"):
        monkeypatch.setenv("SEVIS_PARSE_NICE", wrong)
        with pytest.raises(ValueError, match=rf"SEVIS_PARSE_NICE must be a whole number from 0 to 19, got '{wrong}'"):
            Limits.from_env()
    with pytest.raises(ValueError, match="Limits.parse_nice must be a whole number from 0 to 19, got 20"):
        Limits(parse_nice=20)


@pytest.fixture(scope="module")
def se_state() -> dict[str, torch.Tensor]:
    return timm.create_model("legacy_seresnet50").state_dict()


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.int8])
def test_tensors_of_a_type_the_network_does_not_use_are_refused_by_name(tmp_path, se_state, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in se_state.items()}
    path = tmp_path / "retyped.pth"
    torch.save(state, path)
    kind = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=f"layer0.conv1.weight is {kind} where se_resnet50 has float32"):
        sevis.load_model("se_resnet50", path, check=False)


def test_complex_tensors_are_refused_before_loading_in_every_format(tmp_path, se_state):
    state = {k: v.to(torch.complex64) if v.is_floating_point() else v for k, v in se_state.items()}
    torch.save(state, tmp_path / "complex.pth")
    write(tmp_path, "complex_legacy.pth", legacy_checkpoint(b"", state))
    safetensors.torch.save_file(state, str(tmp_path / "complex.safetensors"))
    for name in ("complex.pth", "complex_legacy.pth"):
        with pytest.raises(CheckpointError, match="stored as ComplexFloatStorage \\(not real numbers\\)"):
            sevis.load_model("se_resnet50", tmp_path / name, check=False)
    with pytest.raises(CheckpointError, match="is complex64, not real numbers"):
        sevis.load_model("se_resnet50", tmp_path / "complex.safetensors", check=False)


def test_half_precision_weights_load_and_nan_weights_do_not(tmp_path, se_state):
    half = {k: v.half() if v.is_floating_point() else v for k, v in se_state.items()}
    torch.save(half, tmp_path / "half.pth")
    model = sevis.load_model("se_resnet50", tmp_path / "half.pth", check=False)
    assert torch.equal(model.state_dict()["layer0.conv1.weight"], half["layer0.conv1.weight"].float())
    broken = dict(se_state)
    broken["layer4.2.se_module.fc2.bias"] = torch.full_like(broken["layer4.2.se_module.fc2.bias"], float("nan"))
    torch.save(broken, tmp_path / "nan.pth")
    with pytest.raises(
        CheckpointError, match=r"1 tensors hold NaN or infinite values \(layer4\.2\.se_module\.fc2\.bias\)"
    ):
        sevis.load_model("se_resnet50", tmp_path / "nan.pth", check=False)


def test_storages_claiming_more_than_the_file_holds_are_refused(tmp_path):
    state = {"w": torch.zeros(300)}  # 300 = BININT2 0x012C in the storage reference
    claim = b"J" + struct.pack("<i", 2**20)  # BININT: a million floats, 4 MB
    legacy = legacy_checkpoint(b"", state)
    # the storage reference comes first, then the tensor's size (300,)
    path = write(tmp_path, "claims.pth", legacy.replace(b"M\x2c\x01", claim, 1))
    with pytest.raises(CheckpointError, match="its tensors claim 4.0 MB but the file holds 0.0 MB after them"):
        read_checkpoint(path)
    path = write(tmp_path, "claims.pth", legacy.replace(b"M\x2c\x01", b"J" + struct.pack("<i", 2**31 - 1), 1))
    with pytest.raises(CheckpointError, match="its tensors claim more than 1,024 MB"):  # 8 GB
        read_checkpoint(path)
    saved = io.BytesIO()
    torch.save(state, saved)
    source, out = zipfile.ZipFile(saved), io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            archive.writestr(info, data.replace(b"M\x2c\x01", claim, 1) if info.filename.endswith("data.pkl") else data)
    path = write(tmp_path, "claims_zip.pth", out.getvalue())
    with pytest.raises(CheckpointError, match="data is missing or shorter than it claims"):
        read_checkpoint(path)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    sparse = tmp_path / "huge.pth"
    with open(sparse, "wb") as f:
        f.truncate(3 * 1024**3)  # 3 GB, no blocks on disk
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="3,072 MB, more than the limit of 1,024 MB"):
            read_checkpoint(sparse)
        with pytest.raises(CheckpointError, match="3,072 MB, more than the limit of 1,024 MB"):
            read_checkpoint_isolated(sparse)
        assert tracemalloc.get_traced_memory()[1] < 10 * MB
    finally:
        tracemalloc.stop()


def test_messages_about_a_file_do_not_echo_what_it_holds(tmp_path):
    long_key = "k" * 100_000
    torch.save({long_key: [1, 2, 3], "x" * 5: (1,)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(tmp_path / "odd.pth")
    assert "found a dict with 2 text keys" in str(caught.value) and len(str(caught.value)) < 300


def deflated_zeros(members: dict[str, int]) -> bytes:
    """A zip whose members are ``size`` zero bytes each, deflated (about 1 KB per MB),
    written without ever holding a member in memory."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        chunk = bytes(16 * MB)
        for name, size in members.items():
            with archive.open(name, "w", force_zip64=True) as f:
                for _ in range(size // len(chunk)):
                    f.write(chunk)
    return out.getvalue()


@pytest.fixture(scope="module")
def four_gigabytes() -> bytes:
    return deflated_zeros({f"pics/{i}.png": 1024**3 for i in range(4)})


def test_zip_members_over_the_limit_are_named_and_never_unpacked(four_gigabytes, photos):
    assert len(four_gigabytes) < 8 * MB  # the review's 4.3 MB zip
    tracemalloc.start()
    try:
        files, failures = sevis.read_zip(four_gigabytes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert files == [] and [f.name for f in failures] == [f"pics/{i}.png" for i in range(4)]
    assert "1,024 MB unpacked, more than the limit of 64 MB for one file" in failures[0].reason
    assert peak < 16 * MB, peak  # nothing was inflated: one member alone is 1,024 MB
    with pytest.raises(ArchiveError, match="unpacks to 4,096 MB, more than the limit of 1,024 MB"):
        sevis.read_zip(four_gigabytes, limits=Limits(zip_member_bytes=2 * 1024**3))


def many_entries(count: int, declared: int | None = None) -> bytes:
    """A zip of ``count`` empty entries named ``a``, built directly (zipfile would take
    minutes), with zip64 records when ``count`` needs them; the end record may declare
    ``declared`` entries instead of the true count."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    header = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    directory = header * count
    shown = count if declared is None else declared
    end64_at = len(local) + len(directory)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, shown, shown, len(directory), len(local))
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end64_at, 1)
    small = shown < 0xFFFF
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, shown if small else 0xFFFF, shown if small else 0xFFFF,
        len(directory) if small else 0xFFFFFFFF, len(local) if small else 0xFFFFFFFF, 0,
    )  # fmt: skip
    return local + directory + (end if small else end64 + locator + end)


def test_a_zip_of_three_million_entries_is_refused_before_they_are_listed():
    data = many_entries(3_000_000)
    assert len(data) > 100 * MB
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match="declares 3,000,000 entries, more than the limit of 20,000"):
            sevis.read_zip(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # listing them would build 3 million ZipInfo objects (the review: 118 s and 1.9 GB)
    assert peak < 4 * MB, peak
    # an end record that understates the count does not get past the walk
    with pytest.raises(ArchiveError, match="holds more than 20,000 entries"):
        sevis.read_zip(many_entries(30_000, declared=10))
    assert zipfile.ZipFile(io.BytesIO(many_entries(3))).namelist() == ["a", "a", "a"]  # a well-formed zip


def test_zip_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEVIS_ZIP_MAX_FILES", "2")
    monkeypatch.setenv("SEVIS_ZIP_MAX_MEMBER_MB", "0.5")
    limits = Limits.from_env()
    assert (limits.zip_files, limits.zip_member_bytes) == (2, MB // 2)
    with pytest.raises(ArchiveError, match="declares 3 entries, more than the limit of 2"):
        sevis.read_zip(many_entries(3))
    monkeypatch.setenv("SEVIS_ZIP_MAX_FILES", "many")
    with pytest.raises(ValueError, match="SEVIS_ZIP_MAX_FILES must be a number, got 'many'"):
        Limits.from_env()
