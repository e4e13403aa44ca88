"""Weights files: downloaded over real HTTP from a local server standing in for the source
(resumed after a dropped connection, checked, recorded), found in the weights folder, and
checked on photographs; `sevis weights list|fetch|check`."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import ROOT
from torch import nn

import sevis
from sevis.cli import main
from sevis.models.registry import IMAGENET_CONFIG
from sevis.models.selfcheck import CHECK_PHOTOS, self_check
from sevis.models.weights import WeightsFile, fetch_weights, register_weights, weights_file


class _Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes) with Range requests; ``drop_after`` bytes of the
    first full response are sent, then the connection is closed (a dropped download)."""

    def __init__(self, files: dict[str, bytes], drop_after: int | None = None) -> None:
        self.files, self.drop_after, self.requests = files, drop_after, []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.drop_after is not None and not start:
            body, self.server.drop_after = body[: self.server.drop_after], None
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(2)  # the rest never comes
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    servers = []

    def start(files: dict[str, bytes], drop_after: int | None = None) -> _Server:
        server = _Server(files, drop_after)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SEVIS_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path / "weights"


def url(server: _Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.mark.slow
def test_download_over_http_resumes_checks_and_records(serve, folder, senet_file):
    data = senet_file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    server = serve({"/se.pth": data}, drop_after=len(data) // 3)
    name = f"se_resnet50-{digest[:8]}.pth"
    register_weights(
        "se_resnet50", WeightsFile(name, (url(server, "/missing.pth"), url(server, "/se.pth")), (), digest[:8])
    )
    with pytest.raises(
        sevis.WeightsUnavailableError, match=r"127.0.0.1:\d+: HTTP 404.*127.0.0.1:\d+: the download stopped at"
    ):
        sevis.load_model("se_resnet50")
    partial = folder / (name + ".part")
    assert partial.stat().st_size == len(data) // 3 and sevis.list_weights_files() == []
    model = sevis.load_model("se_resnet50")  # the second try asks for the rest only
    assert ("/se.pth", f"bytes={len(data) // 3}-") in server.requests
    assert (folder / name).read_bytes() == data and not partial.exists()
    info = model.sevis_info
    assert info.weights == str(folder / name) and info.weights_sha256 == digest
    reference = sevis.load_model("se_resnet50", senet_file)
    for (key, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    # Found in the folder from now on: no request at all.
    before = len(server.requests)
    assert fetch_weights("se_resnet50") == folder / name and len(server.requests) == before


@pytest.mark.slow
def test_cli_check_shows_each_photographs_top_five_and_fails_random_weights(senet_file, folder, capsys):
    assert main(["weights", "check", str(senet_file)]) == 1  # random values in the real layout
    out = capsys.readouterr().out
    digest = hashlib.sha256(senet_file.read_bytes()).hexdigest()
    assert out.splitlines()[0] == f"se_resnet50 with {senet_file} (SHA-256 {digest})"
    for photo, expected in (("chelsea.png", "tabby, tabby cat, tiger cat, Egyptian cat"), ("rocket.jpg", "missile")):
        line = next(x for x in out.splitlines() if f" {photo}: top-5 " in x)
        assert line.startswith("  FAIL ") and expected in line
    assert out.splitlines()[-1].startswith("self-check on photographs FAILED: chelsea.png: ")


def test_a_file_with_another_checksum_is_not_kept(serve, folder):
    server = serve({"/x.pth": b"not the weights"})
    register_weights("se_resnet50", WeightsFile("se_resnet50-ce0d4300.pth", (url(server, "/x.pth"),), (), "ce0d4300"))
    with pytest.raises(sevis.WeightsUnavailableError, match="does not start with ce0d4300: not the expected file"):
        fetch_weights("se_resnet50", progress=False)
    assert not list(folder.iterdir())


def test_the_cli_lists_fetches_and_names_alternatives(serve, folder, capsys):
    server = serve({"/sge.pth.tar": b"x" * 1000})
    register_weights("sge_resnet50", WeightsFile("sge_resnet50.pth.tar", (url(server, "/sge.pth.tar"),), ("a page",)))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"weights folder: {folder}" in out
    assert "sge_resnet50: sge_resnet50.pth.tar not there (sevis weights fetch sge_resnet50; or by hand: a page)" in out
    assert main(["weights", "fetch", "sge_resnet50"]) == 0
    assert f"sge_resnet50: {folder / 'sge_resnet50.pth.tar'} (SHA-256 {hashlib.sha256(b'x' * 1000).hexdigest()})" in (
        capsys.readouterr().out
    )
    assert main(["weights", "list"]) == 0
    assert "sge_resnet50: sge_resnet50.pth.tar, 0.0 MB, SHA-256 " in capsys.readouterr().out
    assert main(["weights", "fetch", "resnet50"]) == 2
    said = capsys.readouterr().err
    known = "se_resnet50, sge_resnet50, resnet50_pytorchinsight, cbam_resnet50,"
    assert f"resnet50: no pretrained weights file to fetch (known: {known}" in said
    assert said.rstrip().endswith("seresnet50.ra2_in1k)")
    # An extract that cannot get its weights says what to do in the command line's own words.
    register_weights("se_resnet50", WeightsFile("se.pth", (url(server, "/gone.pth"),), ("a page",)))
    assert main(["extract", str(folder), "--out", str(folder / "run.parquet")]) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded (127.0.0.1" in err and "Download se.pth by hand (a page)" in err
    assert "--weights untrained" in err and "weights=" not in err


def test_a_registered_model_finds_its_hand_downloaded_file_by_pattern(folder, senet_file):
    sevis.register_model(
        "my_se",
        lambda pretrained: timm.create_model("legacy_seresnet50"),
        description="a plugin's SE-ResNet-50",
        pretrained_source="https://example.org/my-se (by hand)",
        local_pretrained="*my*se*",
    )
    with pytest.raises(sevis.WeightsUnavailableError) as err:
        sevis.load_model("my_se", check=False)
    assert str(err.value) == (
        f"no pretrained weights for my_se in {folder}: put a file named like *my*se* there "
        "(https://example.org/my-se (by hand))"
    )
    folder.mkdir()
    (folder / "my_se_v2.pth").write_bytes(senet_file.read_bytes())
    assert sevis.load_model("my_se", check=False).sevis_info.weights == str(folder / "my_se_v2.pth")
    sevis.unregister_model("my_se")
    assert weights_file("my_se") is None


class _StandIn(nn.Module):
    """A classifier fitted on the check photographs as ``config`` preprocesses them: a fixed
    random convolution, then a linear head solved so that each photograph scores its first
    expected class 10 above a fixed random score for every other class."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 48, 9, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) * 0.1)
            self.conv.bias.zero_()
        images = [sevis.decode_image((ROOT / "assets" / name).read_bytes()) for name in CHECK_PHOTOS]
        features = self.features(sevis.preprocess(config, images))
        targets = torch.randn(3, 1000, generator=generator, dtype=torch.float64) * 3
        for row, classes in enumerate(CHECK_PHOTOS.values()):
            targets[row, classes[0]] = targets[row].max() + 10
        self.head = nn.Linear(features.shape[1], 1000)
        design = torch.cat([features, torch.ones(3, 1, dtype=torch.float64)], 1)
        solution = torch.linalg.lstsq(design, targets).solution  # exact: 3 equations, 49 unknowns per class
        with torch.no_grad():
            self.head.weight.copy_(solution[:-1].T)
            self.head.bias.copy_(solution[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.float())).mean((2, 3)).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).float())


def test_the_self_check_passes_a_fitted_network_and_fails_wrong_preprocessing_and_random_weights(tiny_se):
    names = sevis.model_info(tiny_se).class_names
    caffe = {**IMAGENET_CONFIG, "mean": (0.0, 0.0, 0.0), "std": (1 / 255, 1 / 255, 1 / 255), "crop_pct": 0.6}
    fitted = _StandIn(caffe)  # made for 0-255 inputs and a tight crop
    right = self_check(fitted, caffe, names)
    assert right is not None and right.passed, right
    assert [p.top5[0] for p in right.photos] == ["tabby, tabby cat", "espresso", "missile"]
    wrong = self_check(fitted, IMAGENET_CONFIG, names)  # the same weights, preprocessed as ImageNet RGB
    assert wrong is not None and not wrong.passed
    assert wrong.summary().startswith("self-check on photographs FAILED: ")
    # Random weights (loaded by load_model: the verdict is in ModelInfo) fail it.
    untrained = sevis.model_info(tiny_se).check
    assert untrained is not None and not untrained.passed and len(untrained.photos) == 3
    assert all(len(p.top5) == 5 for p in untrained.photos)
    # A network without the 1,000 ImageNet classes is not checked.
    assert self_check(fitted, caffe, tuple(f"c{i}" for i in range(10))) is None


def test_the_verdict_travels_with_runs_and_reports(tiny_se, image_folder, tmp_path):
    from sevis.jobs.extraction import extract
    from sevis.report import build_report
    from sevis.runs.reader import read_run
    from sevis.runs.schema import read_metadata

    out = extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    recorded = read_metadata(out).self_check
    assert recorded == sevis.model_info(tiny_se).check.to_dict() and recorded["passed"] is False
    run = read_run(out)
    page = build_report(run)
    assert "self-check on photographs" in page and "FAILED (chelsea.png: " in page
    assert "These weights failed the self-check" not in page  # untrained weights: the untrained note instead
    assert np.isfinite(run.se.mean("SE_5_3")).all()


def test_no_internet_connection_is_named_as_such_once(folder, monkeypatch):
    """Every source's host name failing to resolve is 'no internet connection', said once
    with the hosts; another failure among them keeps each source's own reason."""
    import socket
    import urllib.error
    import urllib.request

    from sevis.errors import WeightsUnavailableError

    def unresolved(request, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unresolved)
    register_weights(
        "se_resnet50", WeightsFile("se.pth", ("https://github.com/a/se.pth", "http://data.lip6.fr/se.pth"))
    )
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights("se_resnet50", folder=folder, progress=False)
    assert info.value.reason == "no internet connection (github.com, data.lip6.fr could not be resolved)"
    assert "[Errno" not in str(info.value) and "Name or service" not in str(info.value)

    def refused(request, timeout):
        if "github" in request.full_url:
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights("se_resnet50", folder=folder, progress=False)
    assert info.value.reason.startswith("github.com: no internet connection (github.com could not be resolved); ")
    assert "data.lip6.fr: [Errno 111] Connection refused" in info.value.reason
