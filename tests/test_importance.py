"""Which channels matter (sevis.jobs.importance): each channel knocked out in turn, against
independent whole-network knock-outs, on tiny seeded networks and real photographs."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PHOTOS
from torch import nn

import sevis
from sevis import figures
from sevis.cli import main

NAMES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png"]
LABELS = ["cat", "cup", "cat", "vehicle", "vehicle", "cup"]


def views(model: nn.Module) -> torch.Tensor:
    return sevis.preprocess(model, [sevis.decode_image((PHOTOS / n).read_bytes()) for n in NAMES])


def whole_pass_knockouts(model: nn.Module, x: torch.Tensor, layer: str, channels: list[int], truth: list[int]) -> dict:
    """Each channel's cost from whole forward passes, one knock-out at a time, written out
    from the definitions (nothing of sevis.jobs.importance)."""
    known = np.array([t >= 0 for t in truth])
    rows = np.arange(len(x))
    with torch.inference_mode():
        before = model(x).softmax(1).numpy()
    top_before = before.argmax(1)
    target = np.where(known, truth, top_before)
    out = {}
    for c in channels:
        with torch.inference_mode(), sevis.knockout(model, {layer: sevis.Channels({c: 0.0})}):
            after = model(x).softmax(1).numpy()
        top_after = after.argmax(1)
        out[c] = {
            "p_true_change": (after[rows, target] - before[rows, target])[known].mean(),
            "top1_change": (top_after == target)[known].mean() - (top_before == target)[known].mean(),
            "p_top1_change": (after[rows, top_before] - before[rows, top_before]).mean(),
            "top1_kept": (top_after == top_before).mean(),
        }
    return out


def selectivity_by_hand(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """Morcos et al.'s index from each class's mean of the per-image values (N, D)."""
    means = np.stack([values[np.array(labels) == c].mean(0) for c in sorted(set(labels))])
    top = means.max(0)
    rest = (means.sum(0) - top) / (len(means) - 1)
    return (top - rest) / (top + rest)


@pytest.mark.parametrize(("name", "layer"), [("tiny_se", "SE_5_2"), ("tiny_se", "SE_3_1"), ("tiny_sge", "SGE_4_3")])
def test_importance_equals_whole_pass_knockouts(name, layer, request):
    model = request.getfixturevalue(name)
    x = views(model)
    with torch.inference_mode():
        top = model(x).argmax(1).tolist()
    # true classes: the network's own top-1 for some images, another class for others, none for one
    truth = [top[0], 7, top[2], top[3], -1, 500]
    channels = [0, 3, 5]
    # two batches: the sums must run over batches (and the last batch is smaller)
    batches = [(x[:4], truth[:4], LABELS[:4]), (x[4:], truth[4:], LABELS[4:])]
    result = sevis.channel_importance(model, batches, layer, channels)
    expected = whole_pass_knockouts(model, x, layer, channels, truth)
    table = result.table.set_index(result.index_name)
    for c in channels:
        for column, value in expected[c].items():
            # probabilities of a tiny network over 1,000 classes are about 1e-3: a tight bound
            assert table.loc[c, column] == pytest.approx(value, rel=1e-3, abs=1e-8), (c, column)
    changed = [expected[c]["p_true_change"] / table.loc[c, "p_true_before"] for c in channels]
    assert max(abs(v) for v in changed) > 1e-4  # the knock-outs did change something (by 0.1 % here)
    assert result.images == 6 and result.labelled == 5
    with sevis.capture(model, [layer]) as cap, torch.inference_mode():
        model(x)
    values = cap.values[layer].double().numpy()
    per_image = values if values.ndim == 2 else values.reshape(*values.shape[:2], -1).mean(2)
    by_hand = selectivity_by_hand(per_image, LABELS)[channels]
    # NOTE a tiny network's selectivity is ~1e-3, the difference of two nearly equal float32
    # means (~0.5, each good to ~6e-8, summed in another order per batch): an absolute bound too
    np.testing.assert_allclose(table.selectivity.to_numpy(), by_hand, rtol=1e-5, atol=1e-7)
    # the work: one plain pass of each image, and every knock-out ran from the layer's module on
    assert result.runs == {"network": 6, "knock-outs": 6 * len(channels)}
    assert result.resumed == "attention"


@pytest.mark.parametrize("resumed", ["block", "network"])
def test_the_other_places_a_pass_resumes_at_give_the_same(resumed, tiny_sge, monkeypatch):
    """A block whose forward sevis does not know resumes at the block's input; a network
    that is not stem-stages-head runs whole: the same numbers either way."""
    import sevis.jobs._staged
    import sevis.jobs.importance

    x = views(tiny_sge)
    batches = [(x, [3, 9, 27, -1, 81, 243], LABELS)]
    at_module = sevis.channel_importance(tiny_sge, batches, "SGE_3_2", [1, 6])
    if resumed == "block":
        monkeypatch.setattr(sevis.jobs._staged, "_known_ends", dict)
    else:
        monkeypatch.setattr(sevis.jobs.importance, "staged", lambda model: None)
    other = sevis.channel_importance(tiny_sge, batches, "SGE_3_2", [1, 6])
    assert at_module.resumed == "attention" and other.resumed == resumed
    pd.testing.assert_frame_equal(other.table, at_module.table, rtol=1e-4, atol=1e-9)
    assert at_module.runs == {"network": 6, "knock-outs": 12}  # 6 images, 2 channels
    assert other.runs == {"network": 6 + (12 if resumed == "network" else 0), "knock-outs": 12}


@pytest.mark.parametrize(
    ("name", "layer"),
    [("tiny_se", "SE_4_2"), ("tiny_sge", "SGE_3_2"), pytest.param("se_model", "SE_5_2", marks=pytest.mark.slow)],
)
def test_one_layer_s_knock_outs_resumed_equal_whole_passes_and_run_only_the_network_after_it(name, layer, request):
    """The Channels page's knock-out table: a channel forced to 0 and to 1, resumed at the
    layer, gives sevis.knockout_effects' tables of whole passes; the stages before the
    layer ran once (the plain pass), not three times."""
    from sevis.jobs.importance import layer_knockout_effects

    model = request.getfixturevalue(name)
    x = views(model)[:4]
    knocked = {"0": sevis.Channels({3: 0.0}), "1": sevis.Channels({3: 1.0})}
    whole = sevis.knockout_effects(model, x, {k: {layer: r} for k, r in knocked.items()})
    runs = []
    hook = model.layer1.register_forward_pre_hook(lambda module, args: runs.append(len(args[0])))
    try:
        resumed = layer_knockout_effects(model, x, layer, knocked)
    finally:
        hook.remove()
    assert runs == [4]  # the stages before the layer: the plain pass only
    assert list(resumed) == ["0", "1"]
    for key in knocked:
        pd.testing.assert_frame_equal(resumed[key], whole[key], rtol=1e-5, atol=1e-7)
    assert (resumed["0"].p_change != 0).any()  # the knock-out changes something to compare
    with pytest.raises(sevis.UnknownLayerError, match="'SE_9_9' is not an attention layer"):
        layer_knockout_effects(model, x, "SE_9_9", knocked)


@pytest.mark.slow
def test_the_real_se_resnet50_in_the_senet_layout_resumes_at_its_se_module(se_model, batch):
    """The SENet authors' block (timm's legacy SENet: se_module, then relu of the sum)."""
    truth = [281, 504, -1, 812][: len(batch)]
    labels = ["a", "b", "a", "b"][: len(batch)]
    channels = [0, 1000, 2047]
    result = sevis.channel_importance(se_model, [(batch, truth, labels)], "SE_5_2", channels)
    assert result.resumed == "attention"
    expected = whole_pass_knockouts(se_model, batch, "SE_5_2", channels, truth)
    table = result.table.set_index("channel")
    for c in channels:
        for column, value in expected[c].items():
            assert table.loc[c, column] == pytest.approx(value, rel=1e-3, abs=1e-7), (c, column)


def test_every_channel_and_the_rank_correlation(tiny_se):
    x = views(tiny_se)
    truth = [281, 968, 281, 812, 670, 968]  # tabby, cup, tabby, space shuttle, motor scooter, cup
    result = sevis.channel_importance(tiny_se, [(x, truth, LABELS)], "SE_5_3")
    assert result.table.channel.tolist() == list(range(256))  # all of the layer's channels (64 x 4)
    corr = result.correlation()
    ranks = result.table.selectivity.rank().corr(pd.Series(result.importance()).rank())  # Pearson of ranks
    assert corr["rho"] == pytest.approx(ranks, abs=1e-9) and corr["channels"] == 256 and 0 <= corr["p"] <= 1
    fig = figures.importance_scatter(result.table, "SE_5_3", correlation=corr)
    assert list(fig.data[0].customdata) == list(range(256))
    np.testing.assert_allclose(fig.data[0].y, -result.table.p_true_change.to_numpy())
    assert "Spearman ρ" in fig.layout.title.text


def test_unlabelled_images_and_bad_arguments(tiny_se):
    x = views(tiny_se)
    result = sevis.channel_importance(tiny_se, [(x, [-1] * 6, LABELS)], "SE_4_1", [1, 2])
    assert result.labelled == 0 and result.table.p_true_change.isna().all()
    assert np.isfinite(result.importance()).all()  # then the network's own top-1 is what is scored
    with pytest.raises(sevis.UnknownLayerError, match="SE_9_9"):
        sevis.channel_importance(tiny_se, [(x, [-1] * 6, LABELS)], "SE_9_9")
    with pytest.raises(ValueError, match="has 128 channels"):
        sevis.channel_importance(tiny_se, [(x, [-1] * 6, LABELS)], "SE_4_1", [128])
    with pytest.raises(sevis.DataError, match="no images"):
        sevis.channel_importance(tiny_se, [], "SE_4_1")


def test_sevis_importance_on_a_folder_and_on_an_sge_run(tmp_path, image_folder, capsys):
    out, figure = tmp_path / "importance.csv", tmp_path / "importance.html"
    common = ["--workers", "0", "--quiet"]
    untrained = ["--model", "tiny_se", "--weights", "untrained"]
    args = ["importance", str(image_folder), "--layer", "SE_5_2", *untrained, "--out", str(out), *common]
    assert main([*args, "--channels", "1", "4", "9", "--figure", str(figure)]) == 0
    table = pd.read_csv(out)
    assert table.channel.tolist() == [1, 4, 9]
    assert {"model", "weights_sha256", "untrained", "source", "layer", "images", "selectivity"} <= set(table)
    assert set(table.layer) == {"SE_5_2"} and set(table.images) == {7}  # broken.jpg skipped
    printed = capsys.readouterr()
    assert "broken.jpg" in printed.err and "Spearman rank correlation" in printed.out
    assert "'cat'" in printed.err  # the folder names are no ImageNet classes: said
    assert figure.read_text().count("plotly") > 1
    assert main([*args, "--layer", "SGE_5_2"]) == 2  # the last --layer wins: not a layer of tiny_se
    assert "no layer of tiny_se" in capsys.readouterr().err
    wrong_out = ["--out", str(tmp_path / "x.txt")]
    assert main(["importance", str(image_folder), "--layer", "SE_5_2", *untrained, *wrong_out]) == 2

    from sevis.jobs.extraction import extract

    run = tmp_path / "sge.parquet"
    shutil.rmtree(tmp_path / "copy", ignore_errors=True)
    extract(sevis.load_model("tiny_sge", "untrained"), image_folder, run, workers=0, progress=False)
    assert main(["importance", str(run), "--layer", "SGE_5_2", "--channels", "0", "--out", str(out), *common]) == 0
    table = pd.read_csv(out)
    assert set(table.model) == {"tiny_sge"} and "group" in table and table.group.tolist() == [0]
    assert "the run's network" in capsys.readouterr().err
    refused = ["importance", str(run), "--layer", "SE_5_2", "--model", "tiny_se", "--out", str(out), *common]
    assert main(refused) == 2
    assert "--other-model" in capsys.readouterr().err
