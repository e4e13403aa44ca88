"""PytorchInsight's ResNet-50 family beside SGE: CBAM-, BAM- and SK-ResNet-50.

Each network loads the authors' training checkpoint (``module.``-prefixed, in a
``state_dict`` wrapper with optimizer state) strictly and gives the authors' own code's
logits with the same weights (their files, verbatim, in ``tests/reference``); each gate's
captured values equal its formula restated here; each "removed" equals a copy of the
network with the module replaced as README Methods says; CBAM's spatial gates and BAM's
gates go through statistics, a saved run and the report.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import captured_by_path, module_inputs
from numpy.testing import assert_allclose
from tiny import randomize_
from torch import nn
from torch.testing import assert_close

import sevis
from sevis import figures
from sevis.attention import BAM, CBAMChannelGate, CBAMSpatialGate, SKBottleneck
from sevis.cli import main
from sevis.errors import CheckpointError
from sevis.runs.reader import read_run

REFERENCES = ("cbam_resnet50", "bam_resnet50", "sk_resnet50", "resnet50_pytorchinsight")


@pytest.fixture(scope="module")
def x(photos) -> torch.Tensor:
    images = [sevis.decode_image(photos[name]) for name in ("chelsea.png", "rocket.jpg")]
    return sevis.preprocess(sevis.load_model("se_resnet50", "untrained", check=False), images)


@pytest.fixture(scope="module")
def checkpoints(pytorchinsight_files) -> dict[str, tuple[nn.Module, object]]:
    return pytorchinsight_files


@pytest.mark.parametrize("name", REFERENCES)
def test_the_authors_checkpoint_loads_strictly_and_gives_their_logits(name, checkpoints, x):
    theirs, path = checkpoints[name]
    ours = sevis.load_model(name, path, check=False)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert sevis.model_info(ours).weights_sha256 is not None


def test_another_networks_checkpoint_is_refused_by_name(checkpoints):
    _, cbam = checkpoints["cbam_resnet50"]
    for name in ("bam_resnet50", "sk_resnet50", "sge_resnet50", "resnet50_pytorchinsight"):
        with pytest.raises(CheckpointError, match=rf"cbam_resnet50\.pth\.tar does not fit {name}"):
            sevis.load_model(name, cbam, check=False)


def test_the_plain_resnet_classifies_and_ablates_with_nothing_to_capture(checkpoints, x):
    """The recipe's ResNet-50 without attention: the baseline row of the comparison."""
    _, path = checkpoints["resnet50_pytorchinsight"]
    model = sevis.load_model("resnet50_pytorchinsight", path, check=False)
    assert sevis.find_attention(model) == []
    with torch.no_grad():
        truth = model(x).argmax(1).tolist()
    table = sevis.ablate(model, [(x, truth)]).table
    assert table.condition.tolist() == ["none", "all"] and table.top1.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="no attention layers"):
        sevis.capture(model)


def test_names_kinds_and_the_papers_counts():
    cbam = [(x.name, x.kind) for x in sevis.find_attention(sevis.load_model("cbam_resnet50", "untrained", check=False))]
    assert cbam[:2] == [("CBAMC_2_1", "se"), ("CBAMS_2_1", "spatial")] and len(cbam) == 32
    bam = [(x.name, x.kind) for x in sevis.find_attention(sevis.load_model("bam_resnet50", "untrained", check=False))]
    assert bam == [("BAM_2_4", "bam"), ("BAM_3_5", "bam"), ("BAM_4_7", "bam")]  # after each stage's last block
    sk = [x.name for x in sevis.find_attention(sevis.load_model("sk_resnet50", "untrained", check=False))]
    assert sk[0] == "SK_2_1" and sk[-1] == "SK_5_3" and len(sk) == 16


def _bn(x: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)


def test_cbam_gates_equal_their_formula(x):
    """Channel: sigmoid(MLP(avgpool) + MLP(maxpool)), one MLP; spatial, on the channel-gated
    features: sigmoid(BN(conv7x7([max over channels, mean over channels])))."""
    model = sevis.load_model("tiny_cbam", "untrained", check=False)
    captured = captured_by_path(model, x)
    channel_inputs, spatial_inputs = module_inputs(model, CBAMChannelGate, x), module_inputs(model, CBAMSpatialGate, x)
    assert len(channel_inputs) == len(spatial_inputs) == 16
    for path, features in channel_inputs.items():
        fc1, fc2 = model.get_submodule(path).mlp[1], model.get_submodule(path).mlp[3]

        def mlp(v: torch.Tensor, fc1: nn.Linear = fc1, fc2: nn.Linear = fc2) -> torch.Tensor:
            return F.linear(F.relu(F.linear(v, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)

        expected = torch.sigmoid(mlp(features.mean((2, 3))) + mlp(features.amax((2, 3))))
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)
    for path, features in spatial_inputs.items():
        gate = model.get_submodule(path)
        pooled = torch.stack([features.max(1).values, features.mean(1)], 1)
        expected = torch.sigmoid(_bn(F.conv2d(pooled, gate.spatial.conv.weight, padding=3), gate.spatial.bn))
        assert captured[path].shape == (2, 1, *features.shape[-2:])
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)


def test_bam_gates_equal_their_formula(x):
    """sigmoid(M_c(F) * M_s(F)): M_c = MLP with BatchNorm of the average-pooled features,
    M_s = 1x1 reduction, two 3x3 convolutions of dilation 4, a 1x1 to one map (each but the
    last with BatchNorm and ReLU); the block's map is 1 + the gate."""
    model = sevis.load_model("tiny_bam", "untrained", check=False)
    captured = captured_by_path(model, x)
    inputs = module_inputs(model, BAM, x)
    assert len(inputs) == 3
    for path, features in inputs.items():
        c, s = model.get_submodule(path).channel_att.gate_c, model.get_submodule(path).spatial_att.gate_s
        hidden = F.relu(_bn(F.linear(features.mean((2, 3)), c.gate_c_fc_0.weight, c.gate_c_fc_0.bias), c.gate_c_bn_1))
        m_c = F.linear(hidden, c.gate_c_fc_final.weight, c.gate_c_fc_final.bias)[:, :, None, None]
        h = F.relu(
            _bn(F.conv2d(features, s.gate_s_conv_reduce0.weight, s.gate_s_conv_reduce0.bias), s.gate_s_bn_reduce0)
        )
        for i in range(2):
            conv = getattr(s, f"gate_s_conv_di_{i}")
            h = F.relu(_bn(F.conv2d(h, conv.weight, conv.bias, padding=4, dilation=4), getattr(s, f"gate_s_bn_di_{i}")))
        m_s = F.conv2d(h, s.gate_s_conv_final.weight, s.gate_s_conv_final.bias)
        expected = torch.sigmoid(m_c * m_s)
        assert captured[path].shape == features.shape
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            assert_close(model.get_submodule(path)(features), features * (1 + expected), rtol=1e-5, atol=1e-5)


def test_sk_bottleneck_branch_weights_equal_their_formula(x):
    """a = softmax over the two branches of W_2 relu(BN(W_1 (GAP(U_1) + GAP(U_2)))), U_1 the
    plain 3x3 branch, U_2 the grouped one, each after BatchNorm and ReLU."""
    model = sevis.load_model("sk_resnet50", "untrained", check=False)
    randomize_(model, 5)
    captured = captured_by_path(model, x)
    for path, block_input in module_inputs(model, SKBottleneck, x).items():
        b = model.get_submodule(path)
        out = F.relu(_bn(F.conv2d(block_input, b.conv1.weight), b.bn1))
        stride = b.conv2.stride
        u1 = F.relu(_bn(F.conv2d(out, b.conv2.weight, stride=stride, padding=1), b.bn2))
        u2 = F.relu(_bn(F.conv2d(out, b.conv2g.weight, stride=stride, padding=1, groups=32), b.bn2g))
        s = u1.mean((2, 3), keepdim=True) + u2.mean((2, 3), keepdim=True)
        logits = F.conv2d(F.relu(_bn(F.conv2d(s, b.conv_fc1.weight), b.bn_fc1)), b.conv_fc2.weight)
        expected = torch.softmax(logits.reshape(len(x), 2, -1), dim=1).transpose(1, 2)
        assert_close(captured[path], expected, rtol=1e-5, atol=1e-6)


class _Half(nn.Module):
    """PytorchInsight's SK bottleneck with its selection taken out: (U_1 + U_2) / 2."""

    def __init__(self, block: SKBottleneck) -> None:
        super().__init__()
        self.__dict__["b"] = block  # not a child: the copy has no SK module left for sevis to find

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.b
        out = b.relu(b.bn1(b.conv1(x)))
        mean = (b.relu(b.bn2(b.conv2(out))) + b.relu(b.bn2g(b.conv2g(out)))) / 2
        return b.relu(b.bn3(b.conv3(mean)) + (x if b.downsample is None else b.downsample(x)))


@pytest.mark.parametrize(("name", "replace"), [("tiny_cbam", "se"), ("tiny_bam", "bam"), ("sk_resnet50", "sk")])
def test_removed_equals_the_network_with_its_modules_replaced_as_documented(name, replace, x):
    """CBAM removed (both gates 1) is the block without CBAM; BAM removed (its gate 0, the map
    1) is the network without BAM; SK removed (each branch 1/2) is the mean of the branches."""
    model = sevis.load_model(name, "untrained", check=False)
    if name == "sk_resnet50":
        randomize_(model, 5)
    copied = copy.deepcopy(model)
    for path, module in list(copied.named_modules()):
        parent, _, child = path.rpartition(".")
        if replace == "se" and path.endswith(".se"):
            copied.get_submodule(parent).se = nn.Identity()
        elif replace == "bam" and isinstance(module, BAM):
            copied.get_submodule(parent)[int(child)] = nn.Identity()
        elif replace == "sk" and isinstance(module, SKBottleneck):
            copied.get_submodule(parent)[int(child)] = _Half(module)
    assert not sevis.find_attention(copied)
    with torch.no_grad(), sevis.knockout(model, layers=[x.name for x in sevis.find_attention(model)]):
        knocked = model(x)
    with torch.no_grad():
        expected, plain = copied(x), model(x)
    assert_close(knocked, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert not torch.allclose(plain, knocked, rtol=1e-3, atol=1e-3)


def test_spatial_and_bam_statistics_saved_run_report_and_figures(image_folder, tmp_path):
    for name, kind, layer, what in (
        ("tiny_cbam", "spatial", "CBAMS_4_6", "spatial gate"),
        ("tiny_bam", "bam", "BAM_3_5", "BAM gate"),
    ):
        model = sevis.load_model(name, "untrained", check=False)
        files = sorted(p for p in image_folder.rglob("*.*") if p.suffix in (".png", ".jpg") and p.name != "broken.jpg")
        labels = [p.parent.name for p in files]
        result = sevis.analyse(model, [(p.name, p.read_bytes()) for p in files], labels, batch_size=1, keep_values=True)
        stats = result.stats[kind]
        values = np.stack([image.values[layer] for image in result.images])  # (N, K, H, W)
        cup = np.array(labels) == "cup"
        flat = values.reshape(*values.shape[:2], -1).astype(np.float64)
        assert_allclose(stats.mean(layer, "cup", "mean"), flat[cup].mean(-1).mean(0), rtol=1e-5)
        assert_allclose(stats.mean(layer, "cup", "var"), flat[cup].var(-1).mean(0), rtol=1e-4, atol=1e-9)
        assert stats.saturation(layer)["share_high"] == pytest.approx(np.mean(values >= 0.99))
        assert stats.histogram(layer).sum() == values.size

        out = tmp_path / f"{name}.parquet"
        assert main(["extract", str(image_folder), "--model", name, "--weights", "untrained",
                     "--batch-size", "1", "--out", str(out)]) == 0  # fmt: skip
        run = read_run(out)
        saved = run.stats[kind]
        assert_allclose(saved.mean(layer, "cup", "mean"), stats.mean(layer, "cup", "mean"), rtol=1e-5)
        fig, hist = figures.kind_figures(kind, saved, layer, ["cat", "cup"])
        assert fig.layout.title.text == f"{layer}: {what} statistics per class"
        assert hist.layout.xaxis.title.text == what
        html = tmp_path / f"{name}.html"
        assert main(["report", str(out), "--out", str(html), "--classes", "cat", "cup"]) == 0
        assert f"{layer}: {what} statistics per class" in html.read_text()


@pytest.mark.parametrize("name", ["tiny_bam", "tiny_cbam"])
def test_the_ablation_equals_whole_network_knockouts(name, x):
    """BAM's three layers end stages 2 to 4, each removed with its stage; CBAM's gates are two
    layers per block, both removed with their stage. The ablation resumes passes at stages:
    its counts equal whole knocked-out passes."""
    model = sevis.load_model(name, "untrained", check=False)
    assert list(sevis.ablation_conditions(model))[:4] == ["none", "stage 2", "stage 3", "stage 4"]
    with torch.no_grad():
        truth = model(x).argmax(1).tolist()
    result = sevis.ablate(model, [(x, truth)])
    table = result.table.set_index("condition")
    for condition, layers in sevis.ablation_conditions(model).items():
        with torch.no_grad(), sevis.knockout(model, layers=layers):
            top1 = (model(x).argmax(1) == torch.tensor(truth)).float().mean().item()
        assert table.loc[condition, "top1"] == pytest.approx(top1), condition
    assert table.loc["none", "top1"] == 1.0


def test_several_runs_of_the_same_images_make_one_page_with_every_module_on_one_chart(image_folder, tmp_path, photos):
    """SE, SK, CBAM (two kinds) and BAM networks over one folder: `sevis report` of the four
    runs draws five curves on one depth axis, each equal to its run's statistics."""
    runs = {}
    for name in ("tiny_se", "tiny_sk", "tiny_cbam", "tiny_bam"):
        out = tmp_path / f"{name}.parquet"
        assert main(["extract", str(image_folder), "--model", name, "--weights", "untrained", "--out", str(out)]) == 0
        runs[name] = read_run(out)
    curves = sevis.module_curves(runs)
    assert list(curves) == ["tiny_se", "tiny_sk", "tiny_cbam CBAMC", "tiny_cbam CBAMS", "tiny_bam"]
    fig = figures.module_depth_curves(curves)
    lines = {t.name: t for t in fig.data if t.yaxis == "y" and t.mode == "lines+markers"}
    assert set(lines) == set(curves)
    se, bam = lines["tiny_se"], lines["tiny_bam"]
    assert dict(zip(se.customdata, se.x, strict=True))["SE_2_3"] == 1.0
    assert dict(zip(se.customdata, se.x, strict=True))["SE_5_3"] == 4.0
    assert list(bam.customdata) == ["BAM_2_4", "BAM_3_5", "BAM_4_7"] and list(bam.x) == [1.0, 2.0, 3.0]
    assert_allclose(bam.y, [runs["tiny_bam"].stats["bam"].specificity(k) for k in bam.customdata])
    sk_high = next(t for t in fig.data if t.name == "tiny_sk" and t.yaxis == "y2")
    assert_allclose(
        sk_high.y, [runs["tiny_sk"].stats["branch"].saturation(k)["share_high"] for k in sk_high.customdata]
    )

    html = tmp_path / "modules.html"
    assert main(["report", *(str(tmp_path / f"{n}.parquet") for n in runs), "--out", str(html)]) == 0
    page = html.read_text()
    assert "sevis: 4 networks on the same images" in page
    assert "Class-specificity and saturation of each module against depth" in page
    assert page.count("plotly.js v") <= 2 and all(f"<h2>{n}</h2>" in page for n in runs)
    assert "SK_4_6: mean weight of each branch per class" in page and "BAM_3_5: BAM gate statistics" in page

    # Their ablations side by side: `sevis ablate` of each run's images with its own network.
    tables = []
    for name in runs:
        table = tmp_path / f"{name}_ablation.csv"
        assert main(["ablate", str(tmp_path / f"{name}.parquet"), "--out", str(table), "--quiet"]) == 0
        tables.append(str(table))
    both = tmp_path / "both.html"
    runs_given = [str(tmp_path / f"{n}.parquet") for n in runs]
    assert main(["report", *runs_given, "--ablations", *tables, "--out", str(both)]) == 0
    page = both.read_text()
    assert "Each stage&#x27;s attention removed, every network" in page or "Each stage's attention removed" in page
    assert page.count("<th>stage 2</th>") == 1 and all(f"<th>{n}</th>" in page for n in runs)
    assert main(["report", *runs_given, "--ablations", *tables[:2], "--out", str(both)]) == 2  # one per run
    (tmp_path / "no.csv").write_text("a,b\n1,2\n")
    assert main(["report", *runs_given, "--ablations", *tables[:3], str(tmp_path / "no.csv"), "--out", str(both)]) == 2

    # Other images are refused by name; --baseline goes with one run.
    other = tmp_path / "other"
    (other / "cat").mkdir(parents=True)
    (other / "cat" / "chelsea.png").write_bytes(photos["chelsea.png"])
    (other / "cat" / "coffee.png").write_bytes(photos["coffee.png"])
    assert (
        main(
            [
                "extract",
                str(other),
                "--model",
                "tiny_sk",
                "--weights",
                "untrained",
                "--out",
                str(tmp_path / "o.parquet"),
            ]
        )
        == 0
    )
    assert main(["report", str(tmp_path / "tiny_se.parquet"), str(tmp_path / "o.parquet"), "--out", str(html)]) == 2
    assert main(["report", str(tmp_path / "tiny_se.parquet"), str(tmp_path / "tiny_sk.parquet"), "--baseline",
                 str(tmp_path / "tiny_se.parquet"), "--out", str(html)]) == 2  # fmt: skip
    # The same network twice with the same weights: two curves and two sections, told apart by place.
    twice = [str(tmp_path / "tiny_se.parquet")] * 2
    assert main(["report", *twice, "--out", str(html)]) == 0
    page = html.read_text()
    assert "<h2>tiny_se (untrained) (run 1)</h2>" in page and "<h2>tiny_se (untrained) (run 2)</h2>" in page
