"""A third kind of attention, defined here, flows through capture, statistics, a saved
run, the report, the dashboard's Classes page and a figure without any change to sevis.

The toy kind is a spatial gate with one mask per image: sigmoid of a 1x1 convolution.
Per image it keeps two summaries of the mask, its mean and its peak.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from numpy.testing import assert_allclose
from tiny import CONFIG, randomize_
from torch import nn

import sevis
from sevis import figures
from sevis.jobs.extraction import extract
from sevis.report import build_report
from sevis.runs.reader import read_run


class ToyGate(nn.Module):
    """x * sigmoid(conv1x1(x)): one (H, W) mask per image."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(x))


class ToyNet(nn.Module):
    """Two toy gates between strided convolutions, then 1,000 ImageNet classes."""

    num_classes = 1000

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 7, stride=8, padding=3)
        self.first = ToyGate(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.second = ToyGate(16)
        self.fc = nn.Linear(16, 1000)
        self.pretrained_cfg = dict(CONFIG)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.second(self.down(torch.relu(self.first(torch.relu(self.stem(x))))))
        return self.fc(x.mean((2, 3)))


class ToyKind(sevis.AttentionKind):
    name = "toy"
    prefix = "TOY"
    fields = ("mean", "peak")
    index_name = "mask"

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return output.detach().flatten(1)  # (N, 1, H, W) -> (N, H * W)

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {"mean": values.mean(1, keepdims=True), "peak": values.max(1, keepdims=True)}


@pytest.fixture
def toy_model() -> nn.Module:
    sevis.register_kind(ToyKind())
    sevis.register_attention(ToyGate, kind="toy", gate="gate")
    sevis.register_model("toy_net", lambda pretrained: randomize_(ToyNet(), 3), description="toy")
    return sevis.load_model("toy_net", "untrained")


def by_hand(model: nn.Module, images: list[bytes]) -> dict[str, np.ndarray]:
    """Each toy layer's masks, (N, H * W), recomputed from the gate's input."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0]))
        for name in ("first", "second")
    ]
    try:
        with torch.no_grad():
            model(sevis.preprocess(model, [sevis.decode_image(data) for data in images]))
    finally:
        for handle in handles:
            handle.remove()
    return {
        layer: torch.sigmoid(getattr(model, name).conv(inputs[name])).flatten(1).detach().numpy()
        for layer, name in (("TOY_1", "first"), ("TOY_2", "second"))
    }


def test_a_toy_kind_flows_through_capture_stats_run_report_and_figure(toy_model, image_folder, tmp_path):
    layers = sevis.find_attention(toy_model)
    assert [(l.name, l.kind, l.path) for l in layers] == [("TOY_1", "toy", "first"), ("TOY_2", "toy", "second")]

    # Capture: the gate's output, reshaped by the kind.
    paths = ["cat/astronaut.png", "cat/chelsea.png", "cup/camera.png", "cup/coffee.png"]
    images = [(image_folder / p).read_bytes() for p in paths]
    expected = by_hand(toy_model, images)
    x = sevis.preprocess(toy_model, [sevis.decode_image(data) for data in images])
    with torch.no_grad(), sevis.capture(toy_model) as cap:
        toy_model(x)
    assert cap.excitations == {} and cap.masks == {}
    assert {k: tuple(v.shape) for k, v in cap.of_kind("toy").items()} == {"TOY_1": (4, 784), "TOY_2": (4, 196)}
    for layer, values in cap.of_kind("toy").items():
        assert_allclose(values.numpy(), expected[layer], rtol=1e-5, atol=1e-6)

    # Statistics: per class, per field, equal to the means computed by hand.
    result = sevis.analyse(toy_model, zip(paths, images, strict=True), labels=["cat", "cat", "cup", "cup"])
    stats = result.stats["toy"]
    assert list(result.stats) == ["toy"] and stats.fields == ("mean", "peak") and stats.classes == ["cat", "cup"]
    assert_allclose(stats.mean("TOY_2", "cup", "peak"), [expected["TOY_2"][2:].max(1).mean()], rtol=1e-5)
    assert_allclose(stats.mean("TOY_1", "cat", "mean"), [expected["TOY_1"][:2].mean()], rtol=1e-5)
    assert stats.histogram("TOY_1", "cat").sum() == 2 * 784
    assert result.images[0].summaries["TOY_1"]["peak"].shape == (1,)

    # A saved run: one column per field, read back into the same statistics.
    out = extract(toy_model, image_folder, tmp_path / "toy.parquet", workers=0, progress=False)
    table = pq.read_table(out)
    assert table.column_names[5:] == ["TOY_1_mean", "TOY_1_peak", "TOY_2_mean", "TOY_2_peak"]
    run = read_run(out)
    assert run.metadata.attention == {"toy": ["TOY_1", "TOY_2"]} and run.stats["toy"].count() == 7
    assert_allclose(run.stats["toy"].mean("TOY_2", "cup", "peak"), stats.mean("TOY_2", "cup", "peak"), rtol=1e-5)

    # Figures: the kind's defaults, one per field, one line per class plus all images.
    figs = figures.kind_figures(ToyKind(), run.stats["toy"], "TOY_2", ["cat", "cup"])
    assert [f.layout.title.text for f in figs] == ["TOY_2: mean mean per class", "TOY_2: mean peak per class"]
    assert [t.name for t in figs[1].data] == ["cat", "cup", "all images"]
    assert_allclose(figs[1].data[1].y, stats.mean("TOY_2", "cup", "peak"), rtol=1e-5)
    page = build_report(run, classes=["cat", "cup"])
    assert (
        "TOY_1: mean peak per class" in page and "Class-specificity and saturation of TOY layers against depth" in page
    )


def test_the_classes_page_shows_a_saved_toy_run(toy_model, image_folder, tmp_path, monkeypatch, offline):
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    out = extract(toy_model, image_folder, tmp_path / "toy.parquet", workers=0, progress=False)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("sevis/app/views/classes.py").run()
    at.radio(key="classes_mode").set_value("run").run()
    at.text_input(key="classes_run_path").set_value(str(out)).run()
    assert not at.exception
    # NOTE offline, the model panel reports that the pretrained weights are unreachable;
    # nothing else may fail: the run needs no model.
    assert all("could not" in e.value and "pretrained" in e.value for e in at.error)
    assert at.selectbox(key="classes_toy_layer").value == "TOY_1"
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(titles) == 4 and all("TOY_1: mean" in t for t in titles[:2])  # each field, by class
    assert "Class-specificity and saturation of TOY layers" in titles[2] and "selectivity" in titles[3]


def test_kind_registration_is_checked():
    with pytest.raises(TypeError, match="AttentionKind instance"):
        sevis.register_kind(ToyKind)  # the class, not an instance
    with pytest.raises(ValueError, match="prefix 'SE' is already used by kind 'se'"):
        sevis.register_kind(type("Clash", (ToyKind,), {"prefix": "SE"})())
    with pytest.raises(ValueError, match="unknown attention kind 'toy'"):
        sevis.get_kind("toy")
