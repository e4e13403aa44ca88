"""`sevis reproduce`: from an ImageNet-shaped flat folder with devkit labels to the papers'
findings in one command, on tiny seeded networks and real photographs: the numbers equal the
library's, a stopped reproduction continues, every finding is named."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PHOTOS, ROOT
from PIL import Image, ImageOps
from timm.data import ImageNetInfo
from tiny import randomize_

import sevis
from sevis.cli import main
from sevis.jobs.ablation import ablate_data, ablation_conditions

# goldfish, pug, airliner (the default "plane"), cliff, and two classes the paper does not show
CLASSES = [1, 254, 404, 972, 281, 967]
PER_CLASS = 3
SENET_FINDINGS = ["accuracy", "figure6", "depth", "saturation", "last_block", "figure7", "knockout"]


@pytest.fixture(scope="module")
def imagenet_val(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A flat folder of JPEGs named as ILSVRC2012's validation files, PER_CLASS a class, with
    the devkit's ground truth (1-based IDs in the devkit's synset order, here the sorted
    WordNet ids reversed) and that order as a text file."""
    root = tmp_path_factory.mktemp("ilsvrc")
    folder = root / "val"
    folder.mkdir()
    photos = sorted(PHOTOS.glob("*.png")) + sorted(PHOTOS.glob("*.jpg"))
    info = ImageNetInfo("imagenet-1k")
    wnids = [info.index_to_label_name(k) for k in range(1000)]
    devkit_order = wnids[::-1]
    truth = []
    for n in range(len(CLASSES) * PER_CLASS):
        image = Image.open(photos[n % len(photos)]).convert("RGB")
        w, h = image.size
        f = 0.6 + 0.05 * (n % 8)
        crop = image.crop((0, 0, int(w * f), int(h * f))).resize((320, 240))
        if n % 2:
            crop = ImageOps.mirror(crop)
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        (folder / f"ILSVRC2012_val_{n + 1:08d}.JPEG").write_bytes(buffer.getvalue())
        truth.append(wnids[CLASSES[n % len(CLASSES)]])
    ground_truth = root / "ILSVRC2012_validation_ground_truth.txt"
    ground_truth.write_text("".join(f"{devkit_order.index(w) + 1}\n" for w in truth))
    synsets = root / "synsets.txt"
    synsets.write_text("".join(f"{w}\n" for w in devkit_order))
    return folder, ground_truth, synsets


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A "trained" tiny SE network's weights file: seeded otherwise than the untrained one."""
    model = randomize_(sevis.load_model("tiny_se", "untrained", check=False), seed=11)
    path = tmp_path_factory.mktemp("weights") / "tiny_se_trained.pth"
    torch.save(model.state_dict(), path)
    return path


def command(paper: str, data: Path, labels: Path, synsets: Path, out: Path, model: str, weights: str) -> list[str]:
    return [
        *("reproduce", paper, str(data), "--out", str(out), "--model", model, "--weights", weights),
        *("--labels", str(labels), "--synsets", str(synsets), "--workers", "0", "--batch-size", "2"),
    ]


def test_senet_on_a_flat_folder_with_devkit_labels_equals_the_library(imagenet_val, trained, tmp_path, capsys):
    data, labels, synsets = imagenet_val
    out = tmp_path / "senet"
    assert main(command("senet", data, labels, synsets, out, "tiny_se", str(trained))) == 0
    captured = capsys.readouterr()
    printed = captured.out
    for step in range(1, 5):  # each step says what it does
        assert f"step {step} of 4: " in captured.err
    numbers = json.loads((out / "findings.json").read_text())
    assert [f["key"] for f in numbers["findings"]] == SENET_FINDINGS  # every finding, named
    for f in numbers["findings"]:
        assert f["title"] in printed and f["verdict"] in {"agrees", "differs", "cannot tell", "look at the figure"}
        assert f["paper"] and f["rule"] and f["measured"]
    found = {f["key"]: f for f in numbers["findings"]}
    page = (out / "report.html").read_text()
    for f in numbers["findings"]:
        assert f"id='{f['key']}'" in page
    assert page.count("plotly") > 10 and "NOTE an intervention on one trained network" in page

    # the run: the devkit's labels, the paper's 50 a class (here all 3), trained weights
    run = sevis.read_run(out / "run.parquet")
    assert run.metadata.labels == "file" and run.metadata.images == len(CLASSES) * PER_CLASS
    assert not run.metadata.untrained and sevis.read_run(out / "untrained.parquet").metadata.untrained
    stats = run.stats["se"]
    wnid = ImageNetInfo("imagenet-1k").index_to_label_name
    # Figure 6: omega squared of the four classes (plane = the airliner), as the library gives it
    figure6 = found["figure6"]["numbers"]
    shown = ["goldfish", "pug", "plane (airliner)", "cliff"]
    four = {wnid(k): name for k, name in zip(CLASSES[:4], shown, strict=True)}
    assert figure6["classes"] == four and figure6["missing"] == []
    regrouped = stats.regroup(four)
    for layer, value in figure6["specificity"].items():
        assert value == pytest.approx(regrouped.specificity(layer), rel=1e-12)
    # depth: every layer's omega squared over all classes, its band, and the untrained run's
    depth = found["depth"]["numbers"]
    base = sevis.read_run(out / "untrained.parquet").stats["se"]
    bands = run.null_bands("se")
    for layer in stats.layers:
        assert depth["specificity"][layer] == pytest.approx(stats.specificity(layer), rel=1e-12)
        assert depth["untrained"][layer] == pytest.approx(base.specificity(layer), rel=1e-12)
        assert depth["band_high"][layer] == pytest.approx(bands[layer].high, rel=1e-12)
    # saturation, every layer's share of gates >= 0.99
    for layer, share in found["saturation"]["numbers"]["share_high"].items():
        assert share == pytest.approx(stats.saturation(layer)["share_high"], rel=1e-12)
    # SE_5_3: the mean correlation of class-mean profiles, written out here
    means = np.stack([stats.mean("SE_5_3", c) for c in stats.classes])
    r = np.corrcoef(means)[np.triu_indices(len(means), 1)].mean()
    assert found["last_block"]["numbers"]["class_correlation"]["SE_5_3"] == pytest.approx(r, rel=1e-9)
    # the knock-out: the last stage's top-5 change, as ablate_data gives it on the run's images
    model = sevis.load_model("tiny_se", str(trained))
    ablation = ablate_data(model, out / "run.parquet", ablation_conditions(model, "se"), workers=0).table
    stage5 = ablation.set_index("condition").loc["stage 5"]
    assert found["knockout"]["numbers"]["top5_change"] == pytest.approx(stage5.top5_change, abs=1e-12)
    assert pd.read_csv(out / "ablation.csv").condition.tolist() == ablation.condition.tolist()
    # accuracy: 18 labelled images are too few to compare with the paper's 50,000
    assert found["accuracy"]["verdict"] == "cannot tell" and found["accuracy"]["numbers"]["labelled_images"] == 18


def test_the_plane_is_chosen_and_missing_classes_are_said(imagenet_val, trained, tmp_path):
    data, labels, synsets = imagenet_val
    out = tmp_path / "warplane"
    args = command("senet", data, labels, synsets, out, "tiny_se", str(trained))
    assert main([*args, "--plane", "warplane"]) == 0
    found = {f["key"]: f for f in json.loads((out / "findings.json").read_text())["findings"]}
    assert found["figure6"]["numbers"]["missing"] == ["plane (warplane, military plane)"]
    assert "not in the run: plane (warplane, military plane)" in found["figure6"]["measured"]
    assert "warplane" in found["figure6"]["rule"]


def test_sge_names_its_findings_and_counts_its_distributions(imagenet_val, tmp_path):
    data, labels, synsets = imagenet_val
    out = tmp_path / "sge"
    assert main(command("sge", data, labels, synsets, out, "tiny_sge", "untrained")) == 0
    numbers = json.loads((out / "findings.json").read_text())
    found = {f["key"]: f for f in numbers["findings"]}
    assert list(found) == ["accuracy", "views", "distributions"]
    assert numbers["untrained"] and not (out / "untrained.parquet").exists()  # random weights: no baseline
    assert found["accuracy"]["verdict"] == "cannot tell" and found["views"]["verdict"] == "look at the figure"
    stats = sevis.read_run(out / "run.parquet").stats["sge"]
    layer = "SGE_5_3"
    centres = (sevis.stats.BIN_EDGES[:-1] + sevis.stats.BIN_EDGES[1:]) / 2
    for when in ("before", "after"):
        counts = stats.distribution(layer, when).astype(np.float64)
        p = counts / counts.sum()
        mean = (p * centres).sum()
        expected = (p * (centres - mean) ** 2).sum()
        assert found["distributions"]["numbers"][layer][when]["variance"] == pytest.approx(expected, rel=1e-9)
    assert "id='views'" in (out / "report.html").read_text()


def test_a_finished_step_is_kept_until_the_run_grows(image_folder, tmp_path, capsys):
    """Run again, the same command keeps the ablation; after more images arrive (the extract
    resumes with them) it is made again for all of them."""
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    out = tmp_path / "sge"
    args = ["reproduce", "sge", str(data), "--out", str(out), "--model", "tiny_sge", "--weights", "untrained"]
    args += ["--workers", "0"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "kept from before" in capsys.readouterr().err
    shutil.copy(data / "cat" / "chelsea.png", data / "cat" / "chelsea-again.png")
    assert main(args) == 0
    assert "kept from before" not in capsys.readouterr().err
    assert json.loads((out / "ablation.json").read_text())["images"] == 8  # 7 readable + the new one
    assert pd.read_csv(out / "ablation.csv").top1_kept.notna().all()


def test_a_network_without_the_papers_attention_is_refused(imagenet_val, tmp_path, capsys):
    data, labels, synsets = imagenet_val
    assert main(command("sge", data, labels, synsets, tmp_path / "x", "tiny_se", "untrained")) == 2
    assert "tiny_se has no SGE layers" in capsys.readouterr().err


KILL_SCRIPT = """
import os, signal, sys
# NOTE a child inherits ignored signals (`nohup`, `&` in a script, CI runners that ignore
# SIGINT): the signal this test sends must do what it does in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.path[:0] = [{root!r}, {root!r} + "/tests"]
import torch, sevis, tiny
from sevis.cli import main
calls = []
def die(module, args):
    calls.append(1)
    if len(calls) == {after}:
        os.kill(os.getpid(), signal.SIGTERM)
import sevis.reproduce
build = sevis.reproduce.load_model
def load(*args, **kwargs):  # every network the reproduction builds counts its forward passes
    model = build(*args, **kwargs)
    model.register_forward_pre_hook(die)
    return model
sevis.reproduce.load_model = load
sys.exit(main({argv!r}))
"""


@pytest.mark.slow
def test_a_reproduction_stopped_by_sigterm_continues_where_it_stopped(imagenet_val, trained, tmp_path):
    data, labels, synsets = imagenet_val
    whole = tmp_path / "whole"
    assert main(command("senet", data, labels, synsets, whole, "tiny_se", str(trained))) == 0
    out = tmp_path / "stopped"
    argv = command("senet", data, labels, synsets, out, "tiny_se", str(trained))
    # forward passes: the self-check's, extract's probe, then 2 images a batch; the 6th is mid-run
    script = KILL_SCRIPT.format(root=str(ROOT), after=6, argv=argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 143, done.stderr[-3000:]  # 128 + SIGTERM
    assert "step 1 of 4: " in done.stderr and "step 2 of 4" not in done.stderr
    assert "the same command continues where it stopped" in done.stderr
    partial = sevis.read_run(out / "run.parquet").metadata.images
    assert 0 < partial < len(CLASSES) * PER_CLASS and not (out / "findings.json").exists()
    assert main(argv) == 0  # the same command again: it continues
    assert sevis.read_run(out / "run.parquet").metadata.images == len(CLASSES) * PER_CLASS
    # the same numbers, the folder's name aside (the ablation's rows name their run)
    ours, theirs = (json.loads((f / "findings.json").read_text().replace(str(f), "OUT")) for f in (out, whole))
    for a, b in zip(ours["findings"], theirs["findings"], strict=True):
        assert (a["key"], a["verdict"], a["measured"]) == (b["key"], b["verdict"], b["measured"])
        assert_close(a["numbers"], b["numbers"])


def assert_close(a: object, b: object) -> None:
    """JSON values equal, numbers to float rounding (the resumed run's rows come in parts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_close(a[key], b[key])
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_close(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    else:
        assert a == b
