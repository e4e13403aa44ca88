"""The attention modules SGE is compared with, beside SE: ECA and circular ECA (channel
gates, kind "se"), SK's and ResNeSt's branch gates (kind "branch"), CBAM's channel gate and
GC fused by scaling (kind "se").

Each capture is compared with the module's formula restated here from its paper, on the
module's own input; each knock-out with a copy of the network whose modules are replaced as
README Methods says "removed" means; the branch kind goes through statistics, a saved run,
the report and its figures.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import captured_by_path, module_inputs
from numpy.testing import assert_allclose
from timm.layers import CecaModule, EcaModule, GlobalContext, SelectiveKernel, SplitAttn
from timm.layers.cbam import CbamModule, LightCbamModule
from torch import nn
from torch.testing import assert_close

import sevis
from sevis import figures
from sevis.cli import main
from sevis.errors import CheckpointError
from sevis.report import build_report
from sevis.runs.reader import read_run


def _image_batch() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))


TWO_CLASSES = {"class 1": ["chelsea.png", "astronaut.png"], "class 2": ["rocket.jpg", "coffee.png"]}


def tiny_app(monkeypatch, link: dict | None = None, **env: str):
    """The dashboard with the tiny networks (``SEVIS_PLUGINS=tiny``) and ``env``, started
    (on ``link``'s query parameters, as a link opens it)."""
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SEVIS_PLUGINS", "tiny")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update(link or {})
    at.run()
    return at


def several_on_the_classes_page(at, untrained: tuple[str, ...], photos, chosen: dict | None = None) -> None:
    """ "Several modules" (``chosen``: multiselect key -> networks), ``untrained`` networks'
    weights untrained, then TWO_CLASSES' photographs on the Classes page."""
    at.sidebar.radio(key="model_choice").set_value("Several modules").run()
    for key, value in (chosen or {}).items():
        at.sidebar.multiselect(key=key).set_value(value).run()
    for name in untrained:
        at.sidebar.selectbox(key=f"{name}_source").set_value("untrained")
    at.run()
    at.switch_page("sevis/app/views/classes.py").run()
    for i, pair in enumerate(TWO_CLASSES.values()):
        at.get("file_uploader")[i].set_value([(n, photos[n], "image/png") for n in pair]).run()


@pytest.mark.parametrize(
    ("model_id", "prefix", "kind", "count"),
    [
        ("ecaresnet50d", "ECA", "se", 16),
        ("ecaresnet50t", "ECA", "se", 16),
        ("skresnext50_32x4d", "SK", "branch", 16),
        ("skresnet18", "SK", "branch", 8),
        ("resnest50d", "SPLIT", "branch", 16),
        ("resnest14d", "SPLIT", "branch", 4),
    ],
)
def test_timm_networks_are_found_by_module_type_with_the_papers_names(model_id, prefix, kind, count):
    model = timm.create_model(model_id, pretrained=False)
    layers = sevis.find_attention(model)
    assert len(layers) == count and {x.kind for x in layers} == {kind}
    assert layers[0].name == f"{prefix}_2_1" and layers[-1].stage == 5
    assert [x.stage for x in layers] == sorted(x.stage for x in layers)


def test_gc_is_a_channel_gate_fused_by_scaling_a_context_map_fused_by_adding_and_light_cbam_is_no_layer():
    # gcresnet50t fuses its context by adding: its attention is the context softmax.
    layers = sevis.find_attention(timm.create_model("gcresnet50t", pretrained=False))
    assert len(layers) == 16 and {x.kind for x in layers} == {"context"} and layers[0].name == "GC_2_1"
    both = nn.Sequential(
        GlobalContext(16, fuse_add=False, fuse_scale=True), GlobalContext(16, fuse_add=True, fuse_scale=False)
    )
    assert [(x.name, x.kind, x.path) for x in sevis.find_attention(both)] == [
        ("GC_1", "se", "0"),
        ("GC_2", "context", "1"),
    ]
    # CBAM's gates are found, but not timm's LightChannelAttn: it calls F.sigmoid, not its gate child.
    cbam = nn.Sequential(CbamModule(16), LightCbamModule(16))
    assert [(x.name, x.kind, x.path) for x in sevis.find_attention(cbam)] == [
        ("CBAMC_1", "se", "0.channel"),
        ("CBAMS_1", "spatial", "0.spatial"),
        ("CBAMS_2", "spatial", "1.spatial"),
    ]


def test_gc_context_weights_equal_their_formula_and_removed_is_the_global_average():
    """GC (arXiv:1904.11492): the context weights are softmax over positions of W_k x (a 1x1
    convolution to one map); removed, they are uniform: the context is the global average,
    as a GC block without its attention (timm's ``conv_attn = None``) computes it."""
    model = sevis.load_model("tiny_gc", "untrained", check=False)
    x = _image_batch()
    captured = captured_by_path(model, x)
    inputs = module_inputs(model, GlobalContext, x)
    assert len(inputs) == 16
    for path, features in inputs.items():
        conv = model.get_submodule(path).conv_attn
        logits = F.conv2d(features, conv.weight, conv.bias).flatten(1)
        expected = torch.softmax(logits, dim=1).reshape(len(x), 1, *features.shape[-2:])
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-7)
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, GlobalContext):
            module.conv_attn = None
    assert not sevis.find_attention(copied)
    with torch.no_grad(), sevis.knockout(model, stages=[2, 3, 4, 5]):
        knocked = model(x)
    with torch.no_grad():
        assert_close(knocked, copied(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(model(x), knocked, atol=1e-3)


def test_gc_context_statistics_saved_run_and_report(image_folder, tmp_path):
    model = sevis.load_model("tiny_gc", "untrained", check=False)
    files = sorted(p for p in image_folder.rglob("*.*") if p.suffix in (".png", ".jpg") and p.name != "broken.jpg")
    labels = [p.parent.name for p in files]
    result = sevis.analyse(model, [(p.name, p.read_bytes()) for p in files], labels, batch_size=1, keep_values=True)
    stats = result.stats["context"]
    weights = np.stack([image.values["GC_4_6"] for image in result.images]).reshape(len(files), -1).astype(np.float64)
    entropy = -(weights * np.log(weights)).sum(1) / np.log(weights.shape[1])
    cup = np.array(labels) == "cup"
    assert_allclose(stats.mean("GC_4_6", "cup", "entropy"), [entropy[cup].mean()], rtol=1e-5)
    assert_allclose(stats.mean("GC_4_6", field="peak"), [(weights.max(1) * weights.shape[1]).mean()], rtol=1e-5)
    over_peak = weights / weights.max(1, keepdims=True)
    assert stats.saturation("GC_4_6")["share_high"] == pytest.approx(np.mean(over_peak >= 0.99))

    out = tmp_path / "gc.parquet"
    assert main(["extract", str(image_folder), "--model", "tiny_gc", "--weights", "untrained",
                 "--batch-size", "1", "--out", str(out)]) == 0  # fmt: skip
    saved = read_run(out).stats["context"]
    assert_allclose(saved.mean("GC_4_6", "cup", "entropy"), stats.mean("GC_4_6", "cup", "entropy"), rtol=1e-5)
    html = tmp_path / "gc.html"
    assert main(["report", str(out), "--out", str(html), "--classes", "cat", "cup"]) == 0
    page = html.read_text()
    assert "GC_5_3: mean entropy per class" in page and "context weight over the image's peak" in page


def test_timms_cbam_gates_and_gc_scale_gate_equal_their_formulas():
    """timm's CBAM: channel gate sigmoid(MLP(avg) + MLP(max)) with 1x1 convolutions, spatial
    gate sigmoid(BN(conv7x7([mean over channels, max over channels]))) (timm's order); GC fused
    by scaling: sigmoid(MLP(context)), the context the softmax-weighted sum of positions."""
    torch.manual_seed(3)
    net = nn.Sequential(CbamModule(32, rd_ratio=1 / 4), GlobalContext(32, fuse_add=False, fuse_scale=True)).eval()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    nn.init.normal_(net[1].mlp_scale.fc2.weight, std=0.3)  # timm zero-initialises it: a gate of 0.5 everywhere
    x = torch.randn(2, 32, 10, 10)
    captured = captured_by_path(net, x)
    channel, spatial, gc = net[0].channel, net[0].spatial, net[1]

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return channel.fc2(F.relu(channel.fc1(v)))

    s_c = torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True))).flatten(1)
    assert_close(captured["0.channel"], s_c, rtol=1e-5, atol=1e-6)
    gated = x * s_c[:, :, None, None]
    conv = spatial.conv
    pooled = torch.cat([gated.mean(1, keepdim=True), gated.amax(1, keepdim=True)], 1)
    s_s = torch.sigmoid(conv.bn(conv.conv(pooled)))
    assert_close(captured["0.spatial"], s_s, rtol=1e-5, atol=1e-6)
    y = gated * s_s
    weights = torch.softmax(F.conv2d(y, gc.conv_attn.weight, gc.conv_attn.bias).flatten(1), dim=1)
    context = (y.flatten(2) * weights[:, None]).sum(-1)[:, :, None, None]
    assert_close(captured["1"], torch.sigmoid(gc.mlp_scale(context)).flatten(1), rtol=1e-5, atol=1e-6)


def test_register_attention_checks_the_prefix():
    with pytest.raises(ValueError, match="prefix"):
        sevis.register_attention(nn.Identity, kind="se", gate="gate", prefix="E-CA")


def test_eca_and_circular_eca_gates_equal_their_formula():
    """ECA (arXiv:1910.03151): s = sigmoid(conv1d_k(GAP(x))) over the channel axis, zero
    padded; CECA pads circularly."""
    x = _image_batch()
    for name, mode in (("tiny_eca", "constant"), ("tiny_ceca", "circular")):
        model = sevis.load_model(name, "untrained", check=False)
        cls = EcaModule if mode == "constant" else CecaModule
        inputs, captured = module_inputs(model, cls, x), captured_by_path(model, x)
        assert len(captured) == 16
        for path, features in inputs.items():
            module = model.get_submodule(path)
            weight = module.conv.weight  # (1, 1, k)
            pad = (weight.shape[-1] - 1) // 2
            pooled = F.pad(features.mean((2, 3))[:, None], (pad, pad), mode=mode)
            expected = torch.sigmoid(F.conv1d(pooled, weight))[:, 0]
            assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)


def _sk_by_hand(module: SelectiveKernel, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """SK (arXiv:1903.06586): branch outputs U_m, U = sum U_m, s = GAP(U),
    z = relu(BN(W_r s)), a = softmax over m of (W_s z) split M-major; returns (U_m, a as (N, C, M))."""
    parts = torch.split(x, x.shape[1] // module.num_paths, 1) if module.split_input else [x] * module.num_paths
    paths = [op(part) for op, part in zip(module.paths, parts, strict=True)]
    attn = module.attn
    s = torch.stack(paths).sum(0).mean((2, 3), keepdim=True)
    bn = attn.bn
    z = F.relu(F.batch_norm(F.conv2d(s, attn.fc_reduce.weight), bn.running_mean, bn.running_var, bn.weight, bn.bias))
    logits = F.conv2d(z, attn.fc_select.weight).flatten(1).reshape(len(x), module.num_paths, -1)
    return paths, torch.softmax(logits, dim=1).transpose(1, 2)


def _split_by_hand(module: SplitAttn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ResNeSt split attention (arXiv:2004.08955): r splits of the grouped convolution's
    output, their sum pooled, two 1x1 convolutions per cardinal group, a softmax over the r
    splits of each channel of each group; returns (splits (N, r, C, H, W), a as (N, C, r))."""
    features = module.act0(module.bn0(module.conv(x)))
    r, card = module.radix, module.rsoftmax.cardinality
    splits = features.reshape(len(x), r, -1, *features.shape[-2:])
    gap = splits.sum(1).mean((2, 3), keepdim=True)
    logits = module.fc2(module.act1(module.bn1(module.fc1(gap)))).flatten(1)
    c = splits.shape[2]
    # fc2's outputs per cardinal group g: r blocks of C / card channels.
    weights = torch.softmax(logits.reshape(len(x), card, r, c // card), dim=2)
    return splits, weights.permute(0, 1, 3, 2).reshape(len(x), c, r)


def test_sk_branch_weights_equal_their_formula_and_weigh_the_branches():
    x = _image_batch()
    model = sevis.load_model("tiny_sk", "untrained", check=False)
    inputs, captured = module_inputs(model, SelectiveKernel, x), captured_by_path(model, x)
    assert len(inputs) == 16
    for path, features in inputs.items():
        module = model.get_submodule(path)
        with torch.no_grad():
            paths, expected = _sk_by_hand(module, features)
            output = module(features)
        assert captured[path].shape == (2, paths[0].shape[1], 2)
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)
        # Channel c of the (N, C, M) rows weighs branch m's channel c in the module's output.
        weighed = sum(p * captured[path][:, :, m, None, None] for m, p in enumerate(paths))
        assert_close(output, weighed, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("radix", "groups"), [(2, 1), (3, 2)])
def test_split_attention_weights_equal_their_formula_and_weigh_the_splits(radix, groups):
    torch.manual_seed(0)
    module = SplitAttn(24, 24, radix=radix, groups=groups, norm_layer=nn.BatchNorm2d).eval()
    for bn in (module.bn0, module.bn1):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 24, 9, 9)
    captured = captured_by_path(nn.Sequential(module), x)["0"]
    with torch.no_grad():
        splits, expected = _split_by_hand(module, x)
        output = module(x)
    assert captured.shape == (3, 24, radix)
    assert_close(captured, expected, rtol=1e-5, atol=1e-6)
    assert_close(captured.sum(-1), torch.ones(3, 24))
    weighed = (splits * captured.permute(0, 2, 1)[..., None, None]).sum(1)
    assert_close(output, weighed, rtol=1e-5, atol=1e-5)


def test_resnest_network_captures_equal_the_formula():
    x = _image_batch()
    model = sevis.load_model("tiny_resnest", "untrained", check=False)
    inputs, captured = module_inputs(model, SplitAttn, x), captured_by_path(model, x)
    assert len(inputs) == 16
    for path, features in inputs.items():
        with torch.no_grad():
            _, expected = _split_by_hand(model.get_submodule(path), features)
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)


class _MeanOfBranches(nn.Module):
    """SK without selection: the plain mean of its branches."""

    def __init__(self, sk: SelectiveKernel) -> None:
        super().__init__()
        self.sk = sk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(_sk_by_hand(self.sk, x)[0]).mean(0)


class _MeanOfSplits(nn.Module):
    """Split attention without attention: the plain mean of the r splits."""

    def __init__(self, split: SplitAttn) -> None:
        super().__init__()
        self.split = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _split_by_hand(self.split, x)[0].mean(1)


@pytest.mark.parametrize(
    ("name", "cls", "replacement"),
    [
        ("tiny_eca", EcaModule, lambda module: nn.Identity()),
        ("tiny_sk", SelectiveKernel, _MeanOfBranches),
        ("tiny_resnest", SplitAttn, _MeanOfSplits),
    ],
)
def test_removed_equals_the_network_with_its_modules_replaced_as_documented(name, cls, replacement):
    model = sevis.load_model(name, "untrained", check=False)
    x = _image_batch()
    for stages in ([5], [2, 3, 4, 5]):
        with torch.no_grad(), sevis.knockout(model, stages=stages):
            knocked = model(x)
        copied = copy.deepcopy(model)
        for layer in sevis.find_attention(copied):
            if layer.stage in stages:
                parent, _, child = layer.path.rpartition(".")
                setattr(copied.get_submodule(parent), child, replacement(layer.module))
        assert not any(isinstance(m, cls) and "." not in p for p, m in copied.named_modules())
        with torch.no_grad():
            assert_close(knocked, copied(x), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert not torch.allclose(model(x), knocked, atol=1e-3)  # the knock-out changed something


def test_a_channel_knockout_sets_every_branch_of_that_channel():
    model = sevis.load_model("tiny_sk", "untrained", check=False)
    x = _image_batch()
    plan = {"SK_3_2": sevis.Channels({5: 0.5})}
    with torch.no_grad(), sevis.capture(model, ["SK_3_2"]) as cap, sevis.knockout(model, plan):
        model(x)
    with torch.no_grad(), sevis.capture(model, ["SK_3_2"]) as plain:
        model(x)
    used, computed = cap.values["SK_3_2"], plain.values["SK_3_2"]
    assert_close(used[:, 5], torch.full_like(used[:, 5], 0.5))
    assert_close(torch.cat([used[:, :5], used[:, 6:]], 1), torch.cat([computed[:, :5], computed[:, 6:]], 1))


def test_a_checkpoint_in_timms_layout_loads_strictly_and_another_networks_is_refused(tmp_path):
    for name in ("tiny_eca", "tiny_sk", "tiny_resnest"):
        model = sevis.load_model(name, "untrained", check=False)
        path = tmp_path / f"{name}.pth"
        state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save(state, path)
        loaded = sevis.load_model(name, path, check=False)
        assert_close(loaded.state_dict(), state)
        assert loaded.sevis_info.weights_sha256 is not None
    with pytest.raises(CheckpointError, match=r"tiny_sk\.pth does not fit tiny_resnest: \d+ keys missing"):
        sevis.load_model("tiny_resnest", tmp_path / "tiny_sk.pth", check=False)


def test_branch_statistics_saved_run_report_and_figures(image_folder, tmp_path):
    model = sevis.load_model("tiny_sk", "untrained", check=False)
    files = sorted(p for p in image_folder.rglob("*.*") if p.suffix in (".png", ".jpg") and p.name != "broken.jpg")
    named = [(str(p.relative_to(image_folder)), p.read_bytes()) for p in files]
    result = sevis.analyse(model, named, [p.parent.name for p in files], batch_size=1, keep_values=True)
    stats = result.stats["branch"]
    assert stats.fields == ("weight", "dominant") and stats.index_name == "channel"

    # The summaries, by hand from the captured rows of each image.
    values = np.stack([image.values["SK_4_6"] for image in result.images])  # (N, C, M)
    labels = [image.label for image in result.images]
    cat = np.array([label == "cat" for label in labels])
    assert_allclose(stats.mean("SK_4_6", "cat", "weight"), values[cat].reshape(cat.sum(), -1).mean(0), rtol=1e-5)
    dominant = values.max(-1)
    assert_allclose(stats.mean("SK_4_6", field="dominant"), dominant.mean(0), rtol=1e-5)
    saturation = stats.saturation("SK_4_6")
    assert saturation["share_high"] == pytest.approx(np.mean(dominant >= 0.99))
    assert saturation["share_low"] == 0.0  # the largest of M weights is at least 1/M

    # A saved run made by the CLI: one column per layer and summary; read back equal.
    out = tmp_path / "sk.parquet"
    assert main(["extract", str(image_folder), "--model", "tiny_sk", "--weights", "untrained",
                 "--batch-size", "1", "--out", str(out)]) == 0  # fmt: skip
    table = pq.read_table(out)
    assert {"SK_2_1_weight", "SK_2_1_dominant", "SK_5_3_weight"} <= set(table.column_names)
    run = read_run(out)
    assert run.metadata.attention == {"branch": [x.name for x in sevis.find_attention(model)]}
    saved = run.stats["branch"]
    assert_allclose(saved.mean("SK_4_6", "cat", "weight"), stats.mean("SK_4_6", "cat", "weight"), rtol=1e-5)
    assert saved.saturation("SK_4_6")["share_high"] == pytest.approx(saturation["share_high"])

    # Figures: each branch's mean weight per class, and the largest weight's histograms.
    profiles, histograms = figures.kind_figures("branch", saved, "SK_4_6", ["cat", "cup"])
    assert profiles.layout.title.text == "SK_4_6: mean weight of each branch per class"
    channels = figures.sample_channels(values.shape[1], 50)
    cup_branch_2 = next(t for t in profiles.data if t.name == "cup" and t.yaxis == "y2")
    assert_allclose(cup_branch_2.y, values[np.array(labels) == "cup"].mean(0)[channels, 1], rtol=1e-5)
    assert histograms.layout.xaxis.title.text == "largest branch weight"
    assert sum(histograms.data[0].y) == pytest.approx(1.0)

    html = tmp_path / "sk.html"
    assert main(["report", str(out), "--out", str(html), "--classes", "cat", "cup"]) == 0
    page = html.read_text()
    assert "SK_5_3: mean weight of each branch per class" in page and "largest branch weight" in page
    assert "Class-specificity and saturation of SK layers against depth" in build_report(run, classes=["cat", "cup"])


def test_compared_networks_weights_come_as_files_of_the_weights_folder(offline, capsys):
    """A timm network of COMPARED loads its pretrained weights from the weights folder, a
    safetensors file in timm's layout as the hub has it, and records its SHA-256; offline
    without the file, the message names the file, its page and the folder."""
    from safetensors.torch import save_file

    from sevis.models.weights import file_sha256

    folder = offline / "sevis-weights"
    model_id = "skresnet18.ra_in1k"
    assert model_id in sevis.list_models() and model_id in sevis.models.COMPARED
    with pytest.raises(sevis.WeightsUnavailableError) as err:
        sevis.load_model(model_id, check=False)
    message = str(err.value)
    assert f"{model_id}.safetensors" in message and "huggingface.co/timm/skresnet18.ra_in1k" in message
    assert str(folder) in message

    state = timm.create_model(model_id, pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / f"{model_id}.safetensors")
    model = sevis.load_model(model_id, check=True)
    info = sevis.model_info(model)
    assert info.weights == str(folder / f"{model_id}.safetensors")
    assert info.weights_sha256 == file_sha256(folder / f"{model_id}.safetensors")
    assert info.check is not None and len(info.check.photos) == 3  # the self-check ran on the photographs
    assert_close(model.state_dict(), state)
    assert [x.name for x in sevis.find_attention(model)][:2] == ["SK_2_1", "SK_2_2"]

    assert main(["weights", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"{model_id}: {model_id}.safetensors" in listed
    assert "resnest50d.in1k: resnest50d.in1k.safetensors not there" in listed


def test_the_classes_page_shows_saved_sk_and_eca_runs(image_folder, tmp_path, monkeypatch, offline):
    """A saved run of each new kind of network on the dashboard's Classes page: the SK run's
    branch figures and its depth curve named by its layers; the ECA run as SE's page shows
    channel gates, its layers by their own names."""
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    from sevis.jobs.extraction import extract

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    for name in ("tiny_sk", "tiny_eca"):
        model = sevis.load_model(name, "untrained", check=False)
        out = extract(model, image_folder, tmp_path / f"{name}.parquet", workers=0, progress=False)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("sevis/app/views/classes.py").run()
        at.radio(key="classes_mode").set_value("run").run()
        at.text_input(key="classes_run_path").set_value(str(out)).run()
        assert not at.exception
        assert all("could not" in e.value and "pretrained" in e.value for e in at.error)
        titles = [c.proto.spec for c in at.get("plotly_chart")]
        if name == "tiny_sk":
            assert at.selectbox(key="classes_branch_layer").value == "SK_4_6"
            assert at.selectbox(key="classes_branch_layer").label == "SK layer"
            assert "SK_4_6: mean weight of each branch per class" in titles[0]
            assert "largest branch weight" in titles[1]
            assert any("Class-specificity and saturation of SK layers" in t for t in titles)
        else:
            assert any("ECA_4_6" in t for t in titles)
            assert any("Class-specificity and saturation of ECA layers" in t for t in titles)


def test_channel_importance_of_a_branch_layer_removes_each_channel_and_uses_its_dominant_weight(photos):
    """Each SK channel knocked out (all its branches weighted 0: the channel removed) equals
    a whole-network knock-out written here; the selectivity beside it is each channel's
    largest branch weight's, one per channel."""
    model = sevis.load_model("tiny_sk", "untrained", check=False)
    names = ["chelsea.png", "coffee.png", "astronaut.png", "camera.png"]
    x = sevis.preprocess(model, [sevis.decode_image(photos[n]) for n in names])
    labels, targets = ["cat", "cup", "cat", "cup"], [281, 504, 281, 504]
    result = sevis.channel_importance(model, [(x, targets, labels)], "SK_5_2", [0, 3, 7])
    with torch.no_grad():
        p_plain = torch.softmax(model(x), 1)[range(4), targets]
        for channel, row in zip([0, 3, 7], result.table.itertuples(), strict=True):
            with sevis.knockout(model, {"SK_5_2": sevis.Channels({channel: 0.0})}):
                p_after = torch.softmax(model(x), 1)[range(4), targets]
            assert row.channel == channel
            assert row.p_true_after == pytest.approx(float(p_after.mean()), rel=1e-4, abs=1e-7)
            assert row.p_true_before == pytest.approx(float(p_plain.mean()), rel=1e-4)
    stats = sevis.analyse(model, [(n, photos[n]) for n in names], labels, batch_size=4).stats["branch"]
    assert_allclose(result.table["selectivity"], stats.selectivity("SK_5_2", "dominant")[[0, 3, 7]], rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny_sk", "tiny_resnest"])
def test_the_ablation_of_a_branch_network_equals_whole_network_knockouts(name, photos):
    """The paper's ablation on a branch-gated network (each stage's gates at 1/M, then all),
    its shared-prefix passes against one whole knocked-out forward pass per condition."""
    model = sevis.load_model(name, "untrained", check=False)
    x = sevis.preprocess(model, [sevis.decode_image(data) for data in photos.values()])
    with torch.no_grad():
        truth = model(x).argmax(1).tolist()
    truth[1] = (truth[1] + 1) % 1000  # one image the unmodified network gets wrong
    result = sevis.ablate(model, [(x, truth)])
    table = result.table.set_index("condition")
    conditions = sevis.ablation_conditions(model)
    assert list(conditions) == ["none", "stage 2", "stage 3", "stage 4", "stage 5", "all"]
    changed = False
    for condition, layers in conditions.items():
        with torch.no_grad(), sevis.knockout(model, layers=layers):
            top5 = model(x).topk(5, 1).indices
        top1 = float(np.mean([int(top5[i, 0]) == t for i, t in enumerate(truth)]))
        assert table.loc[condition, "top1"] == pytest.approx(top1)
        assert table.loc[condition, "top5"] == pytest.approx(
            float(np.mean([t in top5[i] for i, t in enumerate(truth)]))
        )
        changed |= top1 != table.loc["none", "top1"]
    assert changed  # removing the branch gates moves some image's top-1


def test_several_modules_on_the_classes_page_share_one_chart(offline, monkeypatch, photos):
    """The model panel's "Several modules": families, then their networks; the Classes page
    draws every module's curve on one chart, equal to the library's over the same images,
    and each network's sections below."""
    from conftest import array

    modules = (
        "SE:Tiny SE=tiny_se,SK:Tiny SK=tiny_sk,SK:Tiny SK again=tiny_sk,CBAM:Tiny CBAM=tiny_cbam,BAM:Tiny BAM=tiny_bam"
    )
    at = tiny_app(monkeypatch, SEVIS_DASHBOARD_MODULES=modules)
    several_on_the_classes_page(at, ("tiny_se", "tiny_sk", "tiny_cbam", "tiny_bam"), photos)
    assert at.sidebar.multiselect(key="modules_families").options == ["SE", "SK", "CBAM", "BAM"]
    assert at.sidebar.multiselect(key="modules_families").value == ["SE", "SK", "CBAM", "BAM"]
    assert at.sidebar.multiselect(key="modules_SK").value == ["Tiny SK"]  # each family's first network
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.header][:5] == ["Every module", "Tiny SE", "Tiny SK", "Tiny CBAM", "Tiny BAM"]
    import plotly.io

    chart = next(c for c in at.get("plotly_chart") if "each module against depth" in c.proto.spec)
    fig = plotly.io.from_json(chart.proto.spec)
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers" and t.yaxis == "y"}
    assert set(lines) == {"Tiny SE", "Tiny SK", "Tiny CBAM CBAMC", "Tiny CBAM CBAMS", "Tiny BAM"}

    ordered = [n for names in TWO_CLASSES.values() for n in names]
    labels = [label for label, names in TWO_CLASSES.items() for _ in names]
    bam = sevis.load_model("tiny_bam", "untrained", check=False)
    expected = sevis.analyse(bam, [(n, photos[n]) for n in ordered], labels).stats["bam"]
    got = lines["Tiny BAM"]
    assert list(got.customdata) == ["BAM_2_4", "BAM_3_5", "BAM_4_7"] and list(array(got.x)) == [1.0, 2.0, 3.0]
    assert_allclose(array(got.y), [expected.specificity(k) for k in got.customdata], rtol=1e-4, atol=1e-6)
    assert len([t for t in fig.data if t.fill == "toself"]) == 5  # a chance band for every curve


def test_a_link_opens_several_modules_with_the_same_networks(monkeypatch):
    """The families and each family's networks are in the view's link: opened afresh, the
    model panel loads the same networks (a network no family has is dropped)."""
    modules = "SE:Tiny SE=tiny_se,SK:Tiny SK=tiny_sk,SK:Tiny SK again=tiny_sk,BAM:Tiny BAM=tiny_bam"
    link = {
        "model_choice": "Several modules",
        "modules_families": ["SK", "BAM"],
        "modules_SK": ["Tiny SK again", "Tiny nothing"],
    }
    at = tiny_app(monkeypatch, link, SEVIS_DASHBOARD_MODULES=modules)
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.radio(key="model_choice").value == "Several modules"
    assert at.sidebar.multiselect(key="modules_families").value == ["SK", "BAM"]
    assert at.sidebar.multiselect(key="modules_SK").value == ["Tiny SK again"]
    assert at.sidebar.multiselect(key="modules_BAM").value == ["Tiny BAM"]  # not in the link: its default
    sources = {s.key for s in at.sidebar.selectbox if s.key and s.key.endswith("_source")}
    assert sources == {"tiny_sk_source", "tiny_bam_source"}


@pytest.mark.parametrize(
    ("name", "layer", "title"),
    [
        ("tiny_cbam", "CBAMS_4_6", "spatial gate"),
        ("tiny_bam", "BAM_3_5", "mean of the 64 channels' gates"),
        ("tiny_gc", "GC_4_6", "context weights over their peak"),
    ],
)
def test_the_images_page_draws_spatial_gates_over_the_image(name, layer, title, offline, monkeypatch, photos):
    """CBAM's spatial map and BAM's gates (their channels' mean) over the photograph, each
    value at its receptive field's centre, equal to the captured map placed the same way."""
    from conftest import ROOT, array
    from streamlit.testing.v1 import AppTest

    from sevis.attention.geometry import layer_grid, upsample

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SEVIS_PLUGINS", "tiny")
    monkeypatch.setenv("SEVIS_DASHBOARD_MODELS", f"Tiny={name}")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.sidebar.selectbox(key=f"{name}_source").set_value("untrained").run()
    at.get("file_uploader")[0].set_value([("coffee.png", photos["coffee.png"], "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key=f"{name}_spatial_layer").value == layer
    import plotly.io

    chart = next(c for c in at.get("plotly_chart") if f"{layer}: {title}" in c.proto.spec)
    heat = next(t for t in plotly.io.from_json(chart.proto.spec).data if t.type == "heatmap")
    model = sevis.load_model(name, "untrained", check=False)
    image = sevis.analyse(model, [("coffee.png", photos["coffee.png"])], keep_values=True).images[0]
    values = image.values[layer]  # (K, H, W)
    drawn = values[0] / values[0].max() if name == "tiny_gc" else values.mean(0)  # GC: over its peak
    expected = upsample(drawn, image.view.shape[:2], layer_grid(model, layer))
    assert_allclose(array(heat.z).reshape(expected.shape), expected, rtol=1e-4, atol=1e-6)


def test_knockout_tables_side_by_side_in_the_library_and_on_the_classes_page(offline, monkeypatch, photos):
    """compare_ablations puts each network's ablation of the same images side by side; the
    Classes page's "Every module" draws it for the networks loaded, each equal to its own
    sevis.ablate."""
    from conftest import array

    names = ["chelsea.png", "astronaut.png", "rocket.jpg", "coffee.png"]
    own = {}
    for name in ("tiny_se", "tiny_sk", "tiny_bam"):
        model = sevis.load_model(name, "untrained", check=False)
        x = sevis.preprocess(model, [sevis.decode_image(photos[n]) for n in names])
        own[name] = sevis.ablate(model, [(x, [-1] * 4)])  # no label is a class: top1_kept only
    table = sevis.compare_ablations(own)
    assert list(table.network.unique()) == ["tiny_se", "tiny_sk", "tiny_bam"]
    assert table[table.network == "tiny_bam"].condition.tolist() == ["none", "stage 2", "stage 3", "stage 4", "all"]
    for name, result in own.items():
        assert_allclose(table[table.network == name].top1_kept, result.table.top1_kept)
    with pytest.raises(ValueError, match="other images"):
        sevis.compare_ablations({"a": own["tiny_se"].table, "b": own["tiny_se"].table.assign(images=3)})

    at = tiny_app(monkeypatch, SEVIS_DASHBOARD_MODULES="SE:Tiny SE=tiny_se,SK:Tiny SK=tiny_sk,BAM:Tiny BAM=tiny_bam")
    several_on_the_classes_page(at, tuple(own), photos)
    at.toggle(key="classes_modules_ablate").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    import plotly.io

    chart = next(c for c in at.get("plotly_chart") if "every network: top-1 kept" in c.proto.spec)
    bars = {t.name: t for t in plotly.io.from_json(chart.proto.spec).data}
    assert list(bars) == ["Tiny SE", "Tiny SK", "Tiny BAM"]
    for label, name in (("Tiny SE", "tiny_se"), ("Tiny SK", "tiny_sk"), ("Tiny BAM", "tiny_bam")):
        assert_allclose(array(bars[label].y), own[name].table.top1_kept)
    side = at.dataframe[0].value
    assert list(side.columns) == ["Tiny SE", "Tiny SK", "Tiny BAM"] and side.index[0] == "none"


def test_checkpoints_of_one_network_against_a_chosen_reference(offline, monkeypatch, photos):
    """Two trainings of one SE network among several modules: each one's mean per channel
    minus the reference's, the reference chosen, and their class-specificity per layer."""
    from conftest import array

    at = tiny_app(monkeypatch, SEVIS_DASHBOARD_MODULES="SE:Tiny SE=tiny_se,SE:Tiny SE B=tiny_se_b,SK:Tiny SK=tiny_sk")
    chosen = {"modules_SE": ["Tiny SE", "Tiny SE B"]}
    several_on_the_classes_page(at, ("tiny_se", "tiny_se_b", "tiny_sk"), photos, chosen)
    at.selectbox(key="classes_reference_se").set_value("Tiny SE B").run()
    at.selectbox(key="classes_reference_se_layer").set_value("SE_5_2").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "2 checkpoints of one network (SE layers)" in [h.value for h in at.subheader]
    files = [(n, photos[n]) for pair in TWO_CLASSES.values() for n in pair]
    labels = [label for label, pair in TWO_CLASSES.items() for _ in pair]
    stats = {
        name: sevis.analyse(sevis.load_model(name, "untrained", check=False), files, labels).stats["se"]
        for name in ("tiny_se", "tiny_se_b")
    }
    import plotly.io

    chart = next(c for c in at.get("plotly_chart") if "each checkpoint" in c.proto.spec)
    assert "SE_5_2" in chart.proto.spec and "Tiny SE B" in chart.proto.spec
    (line,) = [t for t in plotly.io.from_json(chart.proto.spec).data if t.type == "scatter"]
    assert line.name == "Tiny SE"
    expected = stats["tiny_se"].mean("SE_5_2") - stats["tiny_se_b"].mean("SE_5_2")
    assert_allclose(array(line.y), expected, rtol=1e-4, atol=1e-6)
    columns = ["Tiny SE: ω²", "Tiny SE: share ≥ 0.99", "Tiny SE B: ω²", "Tiny SE B: share ≥ 0.99"]
    table = next(d.value for d in at.dataframe if list(d.value.columns) == columns)
    specificity = [stats[n].specificity("SE_4_6") for n in stats]
    assert_allclose(table.loc["SE_4_6", ["Tiny SE: ω²", "Tiny SE B: ω²"]].to_numpy(), specificity, rtol=1e-4, atol=1e-6)
    saturation = [stats[n].saturation("SE_4_6")["share_high"] for n in stats]
    assert_allclose(table.loc["SE_4_6", [c for c in columns if "share" in c]].to_numpy(), saturation, atol=1e-9)
