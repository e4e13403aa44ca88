"""Labels from a file for a flat folder shaped like ImageNet's validation set as distributed:
the devkit's ground truth (with its synset order, as a text file or its meta.mat), Kaggle's
CSV and a plain path,label CSV give the same labels, and extract and ablate use them."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import PHOTOS
from PIL import Image
from timm.data import ImageNetInfo

import sevis
from sevis.cli import main
from sevis.data.files import discover
from sevis.data.labels import read_labels

NAMES = ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "chelsea.png"]


@pytest.fixture
def imagenet_val(tmp_path):
    """Six JPEGs named as ILSVRC2012's validation files, their classes in three label files,
    and the devkit's synset order (not the sorted WordNet ids: here the sorted list reversed)."""
    folder = tmp_path / "val"
    folder.mkdir()
    for i, name in enumerate(NAMES, start=1):
        buffer = io.BytesIO()
        Image.open(PHOTOS / name).convert("RGB").save(buffer, "JPEG")
        (folder / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(buffer.getvalue())
    info = ImageNetInfo("imagenet-1k")
    wnids = [info.index_to_label_name(k) for k in range(1000)]
    devkit_order = wnids[::-1]
    truth = [wnids[k] for k in (281, 409, 967, 812, 670, 281)]  # tabby, clock, espresso, shuttle, scooter
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{devkit_order.index(w) + 1}\n" for w in truth)
    )
    (tmp_path / "synsets.txt").write_text("".join(f"{w}\n" for w in devkit_order))
    kaggle = ["ImageId,PredictionString"] + [
        f"ILSVRC2012_val_{i:08d},{w} 10 20 200 220 {w} 30 40 100 120" for i, w in enumerate(truth, start=1)
    ]
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(kaggle) + "\n")
    plain = ["path,label"] + [f"ILSVRC2012_val_{i:08d}.JPEG,{w}" for i, w in enumerate(truth, start=1)]
    (tmp_path / "labels.csv").write_text("\n".join(plain) + "\n")
    return folder, truth


def test_the_three_formats_give_the_same_labels(imagenet_val, tmp_path):
    folder, truth = imagenet_val
    devkit = read_labels(tmp_path / "ILSVRC2012_validation_ground_truth.txt", tmp_path / "synsets.txt")
    kaggle = read_labels(tmp_path / "LOC_val_solution.csv")
    plain = read_labels(tmp_path / "labels.csv")
    expected = {f"ILSVRC2012_val_{i:08d}": w for i, w in enumerate(truth, start=1)}
    assert devkit == kaggle == plain == expected
    items = discover(folder, labels=devkit)
    assert [i.label for i in items] == truth  # a flat folder, labelled by the file
    assert [i.label for i in discover(folder)] == [None] * 6  # without it: unlabelled (predicted)


def test_the_devkits_meta_mat_gives_its_synset_order(imagenet_val, tmp_path):
    from scipy.io import savemat

    info = ImageNetInfo("imagenet-1k")
    order = [info.index_to_label_name(k) for k in range(1000)][::-1]
    # the devkit's layout: a struct array of 1,860 synsets, the 1,000 leaves first by ID
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")]
    synsets = np.zeros((1002, 1), dtype=fields)
    for k, wnid in enumerate(order):
        synsets[k, 0] = (k + 1, wnid, "a class")
    synsets[1000, 0], synsets[1001, 0] = (1001, "n00001740", "entity"), (1002, "n00001930", "physical entity")
    savemat(tmp_path / "meta.mat", {"synsets": synsets})
    from_mat = read_labels(tmp_path / "ILSVRC2012_validation_ground_truth.txt", tmp_path / "meta.mat")
    assert from_mat == read_labels(tmp_path / "LOC_val_solution.csv")


def test_bad_label_files_are_refused_with_a_message(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2\n")
    with pytest.raises(sevis.DataError, match="give the devkit's synset order"):
        read_labels(ids)
    synsets = tmp_path / "bad_synsets.txt"
    synsets.write_text("n01440764\nnot-an-id\n")
    with pytest.raises(sevis.DataError, match="'not-an-id' is not a WordNet id"):
        read_labels(ids, synsets)
    short = tmp_path / "short.txt"
    short.write_text("n01440764\n")
    ids.write_text("1\n7\n")
    with pytest.raises(sevis.DataError, match="line 2: class ID 7 of 1 to 1"):
        read_labels(ids, short)
    broken = tmp_path / "broken.csv"
    broken.write_text("path,label\nonly-a-path\n")
    with pytest.raises(sevis.DataError, match="broken.csv, line 2: expected path,label"):
        read_labels(broken)
    with pytest.raises(sevis.DataError, match="cannot be read"):
        read_labels(tmp_path / "absent.csv")
    huge = tmp_path / "huge.csv"
    huge.write_text("path,label\nx.jpg," + "y" * 200_000 + "\n")  # past csv's field limit
    with pytest.raises(sevis.DataError, match="huge.csv: not a CSV sevis reads"):
        read_labels(huge)


def test_extract_and_ablate_take_the_label_file(imagenet_val, tmp_path, capsys):
    folder, truth = imagenet_val
    labels = ["--labels", str(tmp_path / "ILSVRC2012_validation_ground_truth.txt")]
    labels += ["--synsets", str(tmp_path / "synsets.txt")]
    out = tmp_path / "run.parquet"
    model = ["--model", "tiny_se", "--weights", "untrained"]
    assert main(["extract", str(folder), *model, "--out", str(out), "--workers", "0", "--quiet", *labels]) == 0
    table = pq.read_table(out, columns=["path", "label", "label_source"]).to_pandas()
    assert table.label.tolist() == truth and set(table.label_source) == {"file"}
    run = sevis.read_run(out)
    assert run.metadata.labels == "file" and run.se.classes == list(dict.fromkeys(truth))
    ablation = tmp_path / "ablation.csv"
    assert main(["ablate", str(folder), *model, "--out", str(ablation), "--workers", "0", "--quiet", *labels]) == 0
    assert (pd.read_csv(ablation).images == 6).all()  # every image labelled with an ImageNet class
    assert main(["ablate", str(out), "--out", str(ablation), "--workers", "0", "--quiet"]) == 0  # the run's own labels
    assert (pd.read_csv(ablation).images == 6).all()
