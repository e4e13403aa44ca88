"""Shared fixtures: seeded models, checkpoint files in each real layout, real photographs.

Tests that need no real ResNet-50 use the tiny networks of tests/tiny.py (``tiny_se``,
``tiny_sge``); those that check fidelity to references or checkpoint layouts use the
real architectures and are marked ``slow`` where they take seconds.

No pretrained weights can be downloaded where the tests run, so checkpoints are
written here with random values, in exactly the layouts users bring (SCIENCE.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage
import timm
import torch
from tiny import randomize_
from torch import nn

import sevis

PHOTOS = Path(skimage.__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent

# NOTE Ray's local instances (every Ray test, and the processes they start, which inherit
# this) live on the loopback address: Ray turns ray.init(_node_ip_address="127.0.0.1") and
# `ray start --node-ip-address 127.0.0.1` into the machine's network address, unless it is
# told that this is a single-machine Ray (its switch for Windows and macOS, read when ray is
# imported). Tests talk to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# NOTE the dashboards the tests start (AppTest, and the servers, which inherit this) draw on
# torch's own threads, like the library calls whose numbers the tests compare with theirs: on
# a loaded machine a session would otherwise run on one thread (sevis.app.services.session_threads)
# and its float32 sums would round differently. The test of that choice unsets it.
os.environ["SEVIS_SESSION_THREADS"] = "0"
# NOTE the processes the tests start run at the suite's own priority. Ray starts its workers
# at niceness 15 and sevis its checkpoint readers 10 steps below the server: beside two
# CPU-bound processes (issue 22's loaded runs) they got a few percent of a core, and one
# Ray test took 442 s instead of 48 (28 alone), the checkpoint tests 2.5x as long. The
# test of the readers' priority sets its own.
os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112  # Ray spells its settings so
os.environ["SEVIS_PARSE_NICE"] = "0"


def hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks left anywhere in ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def shown(markdown: str) -> str:
    """What a reader sees of a Markdown element's source: the dashboard escapes every
    punctuation mark of text from users' files (``sevis.app.widgets.plain``)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def build_wheel(folder: Path) -> Path:
    """The wheel `pip install .` would install, built from a copy of the tree in ``folder``
    (setuptools builds in the tree's build/, which may hold an older layout)."""
    import sys

    source = folder / "source"
    shutil.copytree(ROOT / "sevis", source / "sevis", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "assets", source / "assets")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = folder.glob("sevis-*.whl")
    return wheel


def class_folders(root: Path, classes: dict[str, list[str]]) -> Path:
    """``root`` holding one folder per class with the named photographs in it (ImageFolder)."""
    for label, names in classes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / label / name).write_bytes((PHOTOS / name).read_bytes())
    return root


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of ``{path inside the archive: bytes}``, deflated (or ``compression``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Each test caches saved runs' statistics in a folder of its own, never the user's."""
    monkeypatch.setenv("SEVIS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _restore_registries():
    """Tests that register models, attention classes or kinds leave no trace behind."""
    from sevis.attention import kinds, registry as attention
    from sevis.models import registry as models, weights

    saved = [(r, dict(r)) for r in (attention._REGISTRY, kinds._KINDS, models._REGISTRY, weights._FILES)]
    yield
    for registry, before in saved:
        registry.clear()
        registry.update(before)


@pytest.fixture(scope="session")
def tiny_se() -> nn.Module:
    """A tiny seeded SE network named like SE-ResNet-50 (see tests/tiny.py)."""
    return sevis.load_model("tiny_se", "untrained")


@pytest.fixture(scope="session")
def tiny_sge() -> nn.Module:
    """A tiny seeded SGE network named like SGE-ResNet-50 (see tests/tiny.py)."""
    return sevis.load_model("tiny_sge", "untrained")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A real ImageFolder: 3 classes of photographs, one corrupt file, one stray text file."""
    root = tmp_path_factory.mktemp("imagefolder")
    layout = {
        "cat": ["chelsea.png", "astronaut.png"],
        "cup": ["coffee.png", "camera.png"],
        "vehicle": ["rocket.jpg", "motorcycle_left.png", "motorcycle_right.png"],
    }
    for label, names in layout.items():
        (root / label).mkdir()
        for name in names:
            shutil.copy(PHOTOS / name, root / label / name)
    jpeg = (PHOTOS / "rocket.jpg").read_bytes()
    (root / "vehicle" / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / "cup" / "notes.txt").write_text("not an image")
    return root


RUN_LAYOUT = {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png", "camera.png"], "vehicle": ["rocket.jpg"]}


@pytest.fixture(scope="session")
def run_photos(tmp_path_factory) -> Path:
    """Five photographs in three classes and one file that is no image (the runs' tests)."""
    root = class_folders(tmp_path_factory.mktemp("run-photos"), RUN_LAYOUT)
    (root / "cup" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs shipped with scikit-image, as uploaded bytes."""
    names = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png"]
    return {name: (PHOTOS / name).read_bytes() for name in names}


@pytest.fixture(scope="session")
def senet_state() -> dict[str, torch.Tensor]:
    """Random weights under the SENet authors' key names (se_resnet50-ce0d4300.pth)."""
    model = randomize_(timm.create_model("legacy_seresnet50"), seed=0)
    # NOTE the converted Caffe file predates BatchNorm's num_batches_tracked buffer.
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="session")
def senet_file(tmp_path_factory, senet_state) -> Path:
    path = tmp_path_factory.mktemp("weights") / "se_resnet50-ce0d4300.pth"
    torch.save(senet_state, path)
    return path


@pytest.fixture(scope="session")
def sge_state() -> dict[str, torch.Tensor]:
    """Random SGE-ResNet-50 weights in sevis's (timm) key names."""
    model = sevis.load_model("sge_resnet50", "untrained")
    return randomize_(model, seed=1).state_dict()


def pytorchinsight_checkpoint(state: dict[str, torch.Tensor], arch: str = "sge_resnet50") -> dict:
    """The dict PytorchInsight's training script saves from a DataParallel model, from sevis's
    SGE-ResNet-50 key names (``arch="sge_resnet50"``) or another network's as the authors name them."""
    rename = (".se.", ".sge.") if arch == "sge_resnet50" else ("", "")
    wrapped = {"module." + (k.replace(*rename) if rename[0] else k): v.clone() for k, v in state.items()}
    params = [v for k, v in wrapped.items() if v.is_floating_point() and "running" not in k]
    params = [nn.Parameter(p.clone()) for p in params[:8]]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return {
        "epoch": 100,
        "arch": arch,
        "state_dict": wrapped,
        "best_acc1": torch.tensor(77.584),
        "optimizer": optimizer.state_dict(),
    }


@pytest.fixture(scope="session")
def pytorchinsight_files(tmp_path_factory) -> dict[str, tuple[nn.Module, Path]]:
    """CBAM-, BAM-, SK- and plain ResNet-50 as the authors' code builds them (tests/reference), with
    random weights, and their training checkpoints of them (files named as the weights
    folder names them)."""
    import warnings

    from reference import pi_bam, pi_cbam, pi_old, pi_sk

    folder = tmp_path_factory.mktemp("pytorchinsight")
    made = {}
    builds = {
        "cbam_resnet50": pi_cbam.cbam_resnet50,
        "bam_resnet50": pi_bam.bam_resnet50,
        "sk_resnet50": pi_sk.sk_resnet50,
        "resnet50_pytorchinsight": pi_old.old_resnet50,
    }
    for seed, (name, build) in enumerate(builds.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # their init calls the deprecated init.kaiming_normal
            theirs = build()
        randomize_(theirs, seed + 11).eval()
        path = folder / f"{name}.pth.tar"
        torch.save(pytorchinsight_checkpoint(theirs.state_dict(), arch=name), path)
        made[name] = (theirs, path)
    return made


@pytest.fixture(scope="session")
def sge_file(tmp_path_factory, sge_state) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sge_resnet50.pth.tar"
    torch.save(pytorchinsight_checkpoint(sge_state), path)
    return path


@pytest.fixture(scope="session")
def se_model(senet_file) -> nn.Module:
    return sevis.load_model("se_resnet50", senet_file)


@pytest.fixture(scope="session")
def sge_model(sge_file) -> nn.Module:
    return sevis.load_model("sge_resnet50", sge_file)


@pytest.fixture(scope="session")
def batch(se_model, photos) -> torch.Tensor:
    images = [sevis.decode_image(photos[n]) for n in ("chelsea.png", "coffee.png", "rocket.jpg")]
    return sevis.preprocess(se_model, images)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty weight caches, whatever machine the tests run on."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # NOTE without this, huggingface_hub retries a refused connection for 46 s.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("SEVIS_WEIGHTS_DIR", str(tmp_path / "sevis-weights"))
    os.makedirs(tmp_path / "sevis-weights")
    return tmp_path


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "64k") mounted at ``folder`` for the block, to fill up
    (root only: the test is skipped elsewhere); ``remount(folder, size)`` grows it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def array(value) -> np.ndarray:
    """A figure's array as Plotly's JSON carries it: a list, or typed base64 ({dtype, bdata})."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        shape = value.get("shape", -1)  # a 2-D array's is a string, "224, 224"
        shape = tuple(int(n) for n in shape.split(",")) if isinstance(shape, str) else shape
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.asarray(value)


def module_inputs(model: nn.Module, cls: type[nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every ``cls`` module of ``model`` in one forward pass of ``x``, by module
    path (what a test restates an attention formula from)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(lambda m, args, path=path: seen.__setitem__(path, args[0]))
        for path, module in model.named_modules()
        if isinstance(module, cls)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def captured_by_path(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What :func:`sevis.capture` records of one forward pass of ``x``, by module path."""
    with torch.no_grad(), sevis.capture(model) as cap:
        model(x)
    return {layer.path: cap.values[layer.name] for layer in cap.layers}


class Bucket:
    """An S3 bucket on moto's S3 server (127.0.0.1, a port of its own), reached through
    pyarrow's own S3 client: :meth:`uri` names a place in it as a user would."""

    def __init__(self, port: int, name: str = "runs") -> None:
        from pyarrow.fs import S3FileSystem

        self.port, self.name = port, name
        self.fs = S3FileSystem(
            access_key="testing", secret_key="testing", endpoint_override=f"127.0.0.1:{port}",
            scheme="http", region="us-east-1", allow_bucket_creation=True,
        )  # fmt: skip
        self.fs.create_dir(name)

    def uri(self, key: str, secret: str = "testing") -> str:
        return f"s3://testing:{secret}@{self.name}/{key}?endpoint_override=127.0.0.1:{self.port}&scheme=http&region=us-east-1"

    def names(self, key: str) -> list[str]:
        """The names of the objects under ``key``."""
        from pyarrow.fs import FileSelector

        return sorted(i.base_name for i in self.fs.get_file_info(FileSelector(f"{self.name}/{key}")))


@pytest.fixture(scope="session")
def bucket() -> Iterator[Bucket]:
    """A bucket of a real S3 server (moto's) on the loopback address."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield Bucket(server.get_host_and_port()[1])
    finally:
        server.stop()
