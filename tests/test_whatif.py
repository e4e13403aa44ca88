"""Knock-outs and the ablation experiment (sevis.hooks.knockouts, sevis.jobs.ablation), on tiny seeded networks and real
photographs; one check on the real SE-ResNet-50 architecture."""

from __future__ import annotations

import copy
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PHOTOS, hook_count
from torch import nn

import sevis
from sevis.cli import main

NAMES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png"]


def captured(model: nn.Module, x: torch.Tensor, plan=None, layers=None, labels=None) -> sevis.Capture:
    """A forward pass captured under a knock-out (the capture entered after it: it records
    the values the pass used)."""
    with torch.inference_mode(), sevis.knockout(model, plan) as ko, sevis.capture(model, layers) as cap:
        ko.labels = labels
        model(x)
    return cap


@pytest.fixture(scope="module")
def views(tiny_se) -> torch.Tensor:
    return sevis.preprocess(tiny_se, [sevis.decode_image((PHOTOS / n).read_bytes()) for n in NAMES])


def without_attention(model: nn.Module) -> nn.Module:
    """The network with every attention module replaced by identity, built independently of
    the knock-out's hooks."""
    copy_ = copy.deepcopy(model)
    for layer in sevis.find_attention(copy_):
        copy_.set_submodule(layer.path, nn.Identity())
    assert not sevis.find_attention(copy_)
    return copy_


@pytest.mark.parametrize("name", ["tiny_se", "tiny_sge"])
def test_removing_every_gate_is_the_network_without_attention(name, request, views):
    model = request.getfixturevalue(name)
    with torch.inference_mode():
        base = model(views)
        with sevis.knockout(model, stages=[2, 3, 4, 5]):
            removed = model(views)
        reference = without_attention(model)(views)
    assert torch.equal(removed, reference)
    assert not torch.allclose(removed, base)  # the attention mattered: the check can fail
    assert hook_count(model) == 0


@pytest.mark.slow
def test_removing_every_gate_of_the_real_se_resnet50(se_model, batch):
    with torch.inference_mode(), sevis.knockout(se_model, stages=[2, 3, 4, 5]):
        removed = se_model(batch)
    with torch.inference_mode():
        assert torch.equal(removed, without_attention(se_model)(batch))


def test_forcing_a_channel_changes_that_channel_alone(tiny_se, views):
    plain = captured(tiny_se, views)
    forced = captured(tiny_se, views, {"SE_4_2": sevis.Channels({3: 0.0})})
    before, after = plain.excitations["SE_4_2"], forced.excitations["SE_4_2"]
    changed = (before != after).any(0).nonzero().flatten().tolist()
    assert changed == [3]
    assert torch.all(after[:, 3] == 0) and torch.all(before[:, 3] > 0)
    # layers before it are untouched; the ones after it see the change
    assert torch.equal(plain.excitations["SE_4_1"], forced.excitations["SE_4_1"])
    assert not torch.equal(plain.excitations["SE_4_3"], forced.excitations["SE_4_3"])


def test_forcing_to_one_and_a_channel_out_of_range(tiny_se, views):
    # the capture entered first still records the values used (the knock-out's hook runs first)
    forced = {"SE_5_1": sevis.Channels({0: 1.0, 5: 1.0})}
    with torch.inference_mode(), sevis.capture(tiny_se, ["SE_5_1"]) as cap, sevis.knockout(tiny_se, forced):
        tiny_se(views)
    assert torch.all(cap.excitations["SE_5_1"][:, [0, 5]] == 1)
    with pytest.raises(ValueError, match="SE_5_1 has 256 channels"):
        captured(tiny_se, views, {"SE_5_1": sevis.Channels({256: 0.0})})
    assert hook_count(tiny_se) == 0  # also when the replacement raised inside the pass


def test_no_hook_left_after_an_exception(tiny_se, views):
    with pytest.raises(RuntimeError, match="inside"), sevis.knockout(tiny_se, stages=[5]):
        assert hook_count(tiny_se) == 3
        raise RuntimeError("inside the block")
    assert hook_count(tiny_se) == 0
    with pytest.raises(sevis.UnknownLayerError, match="SE_9_9"):
        sevis.knockout(tiny_se, {"SE_9_9": sevis.Remove()})
    with pytest.raises(sevis.UnknownLayerError, match="stage 7"):
        sevis.knockout(tiny_se, stages=[7])
    with pytest.raises(TypeError, match="Replacement"):
        sevis.knockout(tiny_se, {"SE_5_1": 1.0})  # type: ignore[dict-item]


def test_two_threads_each_get_their_own_forward_pass(tiny_se, views):
    with torch.inference_mode():
        plain = tiny_se(views)
        with sevis.knockout(tiny_se, stages=[3]):
            removed = tiny_se(views)
    assert not torch.allclose(plain, removed)
    barrier = threading.Barrier(2)
    results: dict[str, list[torch.Tensor]] = {"ko": [], "plain": []}

    def knocked() -> None:
        with torch.inference_mode(), sevis.knockout(tiny_se, stages=[3]):
            barrier.wait()
            for _ in range(3):
                results["ko"].append(tiny_se(views))

    def untouched() -> None:
        barrier.wait()  # runs while the other thread's hooks are on the model
        with torch.inference_mode():
            for _ in range(3):
                results["plain"].append(tiny_se(views))

    threads = [threading.Thread(target=knocked), threading.Thread(target=untouched)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(r, removed) for r in results["ko"]) and len(results["ko"]) == 3
    assert all(torch.equal(r, plain) for r in results["plain"]) and len(results["plain"]) == 3
    assert hook_count(tiny_se) == 0


def test_means_of_a_reference_set_and_of_each_class(tiny_se, views):
    labels = ["cat", "cup", "cat", "vehicle", "vehicle", "cup"]
    with torch.inference_mode(), sevis.capture(tiny_se) as cap:
        tiny_se(views)
    stats = sevis.ExcitationStats()
    stats.update(cap.excitations, labels)
    overall = sevis.MeanOf(stats)
    got = captured(tiny_se, views, {"SE_3_2": overall}, ["SE_3_2"])
    mean = cap.excitations["SE_3_2"].double().mean(0)
    assert torch.allclose(got.excitations["SE_3_2"].double(), mean.expand(6, -1), atol=1e-6)

    got = captured(tiny_se, views, {"SE_3_2": sevis.MeanOf(stats, per_class=True)}, ["SE_3_2"], labels)
    cats = cap.excitations["SE_3_2"][[0, 2]].double().mean(0)
    assert torch.allclose(got.excitations["SE_3_2"][2].double(), cats, atol=1e-6)
    with pytest.raises(ValueError, match="one label per image"):
        captured(tiny_se, views, {"SE_3_2": sevis.MeanOf(stats, per_class=True)})
    fixed = torch.linspace(0, 1, mean.numel())
    got = captured(tiny_se, views, {"SE_3_2": sevis.Fixed(fixed)}, ["SE_3_2"])
    assert torch.equal(got.excitations["SE_3_2"], fixed.expand(6, -1))


def test_sge_masks_to_one_and_to_their_group_mean(tiny_sge, tiny_se, views):
    plain = captured(tiny_sge, views, layers=["SGE_4_1"])
    flat = captured(tiny_sge, views, {"SGE_4_1": sevis.GroupMean()}, ["SGE_4_1"])
    masks, before = flat.masks["SGE_4_1"], plain.masks["SGE_4_1"]
    assert torch.allclose(masks, before.mean((2, 3), keepdim=True).expand_as(masks))
    assert before.std((2, 3)).min() > 0  # the plain masks do vary over positions
    ones = captured(tiny_sge, views, {"SGE_4_1": sevis.Remove()}, ["SGE_4_1"])
    assert torch.all(ones.masks["SGE_4_1"] == 1)
    with pytest.raises(ValueError, match="GroupMean needs spatial"):
        captured(tiny_se, views, {"SE_2_1": sevis.GroupMean()})


def test_the_effect_on_each_image(tiny_se, views):
    effect = sevis.knockout_effect(
        tiny_se, views, {n: sevis.Remove() for n in ("SE_3_1", "SE_3_2", "SE_3_3", "SE_3_4")}
    )
    with torch.inference_mode():
        before = tiny_se(views).softmax(1)
        with sevis.knockout(tiny_se, stages=[3]):
            after = tiny_se(views).softmax(1)
    top = before.argmax(1)
    rows = torch.arange(6)
    assert np.allclose(effect.p_before, before[rows, top].numpy())
    assert np.allclose(effect.p_after, after[rows, top].numpy())
    assert effect.top1_changed.tolist() == (after.argmax(1) != top).tolist()
    assert effect.top1_changed.any()  # stage 3 matters to this network: the check can fail
    chosen = sevis.knockout_effect(tiny_se, views, {"SE_3_1": sevis.Remove()}, targets=[5] * 6)
    assert (chosen.target == sevis.model_info(tiny_se).class_names[5]).all()
    # several plans against one plain pass: the same tables, one forward pass fewer per extra plan
    plans = {"off": {"SE_4_1": sevis.Channels({2: 0.0})}, "on": {"SE_4_1": sevis.Channels({2: 1.0})}}
    calls: list[int] = []
    handle = tiny_se.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    try:
        both = sevis.knockout_effects(tiny_se, views, plans)
    finally:
        handle.remove()
    assert len(calls) == 3  # plain, off, on
    for name, plan in plans.items():
        pd.testing.assert_frame_equal(both[name], sevis.knockout_effect(tiny_se, views, plan))


def test_class_indices_by_name_id_and_index():
    names = sevis.load_model("tiny_se", "untrained").sevis_info.class_names
    found, missing = sevis.class_indices(
        ["n02123045", "tabby cat", "Tabby_Cat", "tabby, tabby cat", "281", "crane", "no such class", None], names
    )
    assert found.tolist() == [281, 281, 281, 281, 281, -1, -1, -1]
    assert missing == ["crane", "no such class"]  # crane: a bird and a machine


def hand_count(model: nn.Module, x: torch.Tensor, truth: list[int], conditions: dict[str, list[str]]) -> pd.DataFrame:
    """Accuracy counted one condition at a time with whole forward passes."""
    rows = []
    known = [i for i, t in enumerate(truth) if t >= 0]
    for name, layers in conditions.items():
        with torch.inference_mode(), sevis.knockout(model, layers=layers):
            logits = model(x)
        top5 = logits.topk(5, 1).indices.tolist()
        rows.append(
            {
                "condition": name,
                "top1": sum(top5[i][0] == truth[i] for i in known) / len(known),
                "top5": sum(truth[i] in top5[i] for i in known) / len(known),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def labelled_folder(tmp_path, tiny_se, views):
    """Photographs in class folders named as users name them (WordNet id, class name,
    index), labelled so that some conditions get them right and some wrong."""
    names = sevis.model_info(tiny_se).class_names
    from timm.data import ImageNetInfo

    synset = ImageNetInfo("imagenet-1k").index_to_label_name
    with torch.inference_mode(), sevis.knockout(tiny_se, stages=[3]):
        top = tiny_se(views).topk(5, 1).indices
    folders = [
        synset(int(top[0, 0])),
        names[int(top[1, 1])].split(",")[0],
        str(int(top[2, 0])),
        synset(20),
        "not a class",
        synset(int(top[5, 4])),
    ]
    root = tmp_path / "labelled"
    for photo, folder in zip(NAMES, folders, strict=True):
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(PHOTOS / photo, root / folder / photo)
    (root / folders[0] / "broken.jpg").write_bytes((PHOTOS / "rocket.jpg").read_bytes()[:3000])
    truth, _ = sevis.class_indices(folders, names)
    return root, truth.tolist()


def test_ablation_equals_a_hand_count(tiny_se, views, labelled_folder):
    root, truth = labelled_folder
    result = sevis.ablate_data(tiny_se, root, workers=0, batch_size=4)
    conditions = sevis.ablation_conditions(tiny_se)
    expected = hand_count(tiny_se, views, truth, conditions)
    table = result.table.set_index("condition")
    for row in expected.itertuples():
        assert table.loc[row.condition, "top1"] == pytest.approx(row.top1)
        assert table.loc[row.condition, "top5"] == pytest.approx(row.top5)
    assert table.images.eq(5).all()  # "not a class" counts in no accuracy
    assert len(set(expected.top1)) > 1 and len(set(expected.top5)) > 1  # conditions differ
    assert result.unknown_labels == ["not a class"]
    assert [f.name.split("/")[-1] for f in result.failures] == ["broken.jpg"]
    # the shared prefix: stage k's knock-out reruns stages k..5 only
    n = 6
    assert result.stage_runs == {"layer1": n * 3, "layer2": n * 4, "layer3": n * 5, "layer4": n * 6}


def test_sevis_ablate_writes_the_table(tmp_path, labelled_folder, capsys):
    root, _ = labelled_folder
    out = tmp_path / "ablation.csv"
    code = main(
        [
            "ablate",
            str(root),
            "--model",
            "tiny_se",
            "--weights",
            "untrained",
            "--out",
            str(out),
            "--workers",
            "0",
            "--quiet",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert table.condition.tolist() == ["none", "stage 2", "stage 3", "stage 4", "stage 5", "all"]
    assert {"model", "weights", "weights_sha256", "untrained", "source", "top1", "top5", "top1_change"} <= set(table)
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "'not a class'" in err
    (root / "missile").mkdir()  # two classes have that name: the message lists them
    shutil.copy(PHOTOS / "rocket.jpg", root / "missile" / "rocket.jpg")
    untrained = ["--model", "tiny_se", "--weights", "untrained"]
    assert main(["ablate", str(root), *untrained, "--out", str(out), "--workers", "0", "--quiet"]) == 0
    assert "'missile' (names 2 classes: missile; projectile, missile)" in capsys.readouterr().err
    assert (
        main(["ablate", str(root), "--model", "tiny_se", "--weights", "untrained", "--out", str(tmp_path / "t.txt")])
        == 2
    )
    assert (
        main(["ablate", str(root), "--model", "tiny_se", "--weights", "untrained", "--stages", "9", "--out", str(out)])
        == 2
    )


def test_ablation_beside_other_threads_on_the_shared_model(tiny_se, views):
    truth = list(range(6))
    alone = sevis.ablate(tiny_se, [(views, truth)])
    stop = threading.Event()

    def others() -> None:  # another session's forward passes on the same model
        noise = torch.randn(3, 3, 224, 224)
        with torch.inference_mode():
            while not stop.is_set():
                tiny_se(noise)

    thread = threading.Thread(target=others)
    thread.start()
    try:
        beside = [sevis.ablate(tiny_se, [(views, truth)]) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    for result in beside:
        pd.testing.assert_frame_equal(result.table, alone.table)
        assert result.stage_runs == alone.stage_runs  # only this thread's images counted
    with pytest.raises(ValueError, match="class indices"):
        sevis.ablate(tiny_se, [(views, truth)], replace=sevis.MeanOf(sevis.ExcitationStats(), per_class=True))


def test_sevis_ablate_on_a_run_uses_the_runs_own_network(tmp_path, image_folder, capsys):
    """`sevis ablate RUN` ablates the network the run was made with (an SGE run: SGE; an
    untrained run: the same seed), refuses another one unless told, and says what it used."""
    from sevis.jobs.extraction import extract

    sge_run, se_run = tmp_path / "sge.parquet", tmp_path / "se.parquet"
    extract(sevis.load_model("tiny_sge", "untrained"), image_folder, sge_run, workers=0, progress=False)
    extract(sevis.load_model("tiny_se", "untrained"), image_folder, se_run, workers=0, progress=False)
    out = tmp_path / "ablation.csv"
    common = ["--out", str(out), "--workers", "0", "--quiet"]
    assert main(["ablate", str(sge_run), *common]) == 0  # no --model, no --weights: the run's
    table = pd.read_csv(out)
    assert set(table.model) == {"tiny_sge"} and table.untrained.all() and (table.untrained_seed == 0).all()
    assert "ablating with tiny_sge (untrained, seed 0): the run's network" in capsys.readouterr().err
    assert main(["ablate", str(sge_run), "--model", "tiny_se", *common]) == 2
    err = capsys.readouterr().err
    assert "sge.parquet was made with tiny_sge, not tiny_se" in err and "--other-model" in err
    assert main(["ablate", str(sge_run), "--model", "tiny_se", "--weights", "untrained", "--other-model", *common]) == 0
    assert set(pd.read_csv(out).model) == {"tiny_se"}
    assert "another network than the run's" in capsys.readouterr().err
    # trained weights on an untrained run: not the run's network either
    checkpoint = tmp_path / "other.pth"
    torch.save(sevis.load_model("tiny_se", "untrained").state_dict(), checkpoint)
    assert main(["ablate", str(se_run), "--weights", str(checkpoint), *common]) == 2
    assert "are not the ones se.parquet was made with" in capsys.readouterr().err
