"""Exports are real files of their type, and carry the weights they came from."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow.parquet as pq
import pytest
import torch

import sevis
from sevis import export
from sevis.figures._style import mark_untrained


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"layer": ["SE_2_1", "SE_2_1"], "channel": [0, 1], "mean": [0.25, 0.75]})


def test_provenance_columns_lead(frame):
    out = export.with_provenance(frame, sevis.Provenance("se_resnet50", "untrained", True, None, 0))
    assert list(out.columns) == [
        *("model", "weights", "weights_sha256", "untrained", "untrained_seed"),
        *("layer", "channel", "mean"),
    ]
    assert out["untrained"].all() and (out["untrained_seed"] == 0).all()
    assert list(frame.columns) == ["layer", "channel", "mean"]
    tags = [
        export.weights_tag(sevis.Provenance("se_resnet50", "untrained", True, None, 0)),
        export.weights_tag(sevis.Provenance("se_resnet50", "untrained", True)),  # a run from before seeds
        export.weights_tag(sevis.Provenance("se_resnet50", "/w/a.pth", False, "0123abcd" + "f" * 56)),
        export.weights_tag(sevis.Provenance("se_resnet50", "timm legacy_seresnet50.in1k", False)),
    ]
    assert tags == ["untrained-seed0", "untrained", "sha256-0123abcd", "pretrained"]


def test_csv_and_parquet_round_trip(frame):
    csv = export.frame_csv(frame)
    assert csv.decode().splitlines() == ["layer,channel,mean", "SE_2_1,0,0.25", "SE_2_1,1,0.75"]
    data = export.frame_parquet(frame)
    assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
    pd.testing.assert_frame_equal(pq.read_table(io.BytesIO(data)).to_pandas(), frame)


def test_html_is_standalone():
    fig = mark_untrained(go.Figure(go.Scatter(y=[1, 2]), layout_title_text="SE_2_1 profile"))
    html = export.figure_html(fig).decode()
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert "SE_2_1 profile" in html and "UNTRAINED WEIGHTS" in html
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined, no CDN


@pytest.mark.skipif(not export.png_available(), reason="no Chromium for kaleido")
def test_png_is_a_png_of_the_figure_size():
    from PIL import Image

    fig = go.Figure(go.Bar(y=[3, 1, 2]))
    fig.update_layout(width=400, height=300)
    data = export.figure_png(fig, scale=1)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (400, 300)


def test_export_all_holds_the_view_and_its_snippet_rebuilds_the_numbers(tiny_se, photos, tmp_path):
    import json
    import subprocess
    import sys
    import zipfile

    from sevis import figures

    files = [
        ("photo.jpg", photos["rocket.jpg"]),
        ("photo.jpg (2)", photos["coffee.png"]),
        ("cat.png", photos["chelsea.png"]),
    ]
    files.append(("broken.jpg", photos["rocket.jpg"][:2000]))
    labels = ["rocket", "cup", "cat", "rocket"]
    result = sevis.analyse(tiny_se, files, labels=labels)
    shown = [("tiny_se_figure6", figures.class_profiles_grid(result.se, ["SE_4_6"], ["cup", "cat"]), None)]
    data = export.analysis_bundle(result, files, labels, shown, view="Classes", weights_to_load="untrained", png=False)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "export")
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["model"] == "tiny_se" and manifest["untrained"] is True and manifest["untrained_seed"] == 0
    assert [i["file"] for i in manifest["images"]] == ["photo.jpg", "photo.jpg_2", "cat.png", "broken.jpg"]
    assert manifest["failures"][0]["name"] == "broken.jpg" and manifest["classes"]["se"] == ["rocket", "cup", "cat"]
    assert {"figures/tiny_se_figure6.html", "tables/statistics_se.parquet", "tables/statistics_se.csv"} <= set(names)
    assert {"rebuild.py", "images/photo.jpg", "images/photo.jpg_2", "manifest.json"} <= set(names)
    table = pd.read_csv(tmp_path / "export" / "tables" / "statistics_se.csv")
    assert list(table.columns[:5]) == ["model", "weights", "weights_sha256", "untrained", "untrained_seed"]

    # The snippet, in a fresh interpreter (the tiny networks registered as a plugin would be).
    tests = Path(__file__).resolve().parent
    command = [sys.executable, "-c", "import tiny, runpy; runpy.run_path('rebuild.py', run_name='__main__')"]
    env = {**os.environ, "PYTHONPATH": str(tests)}
    done = subprocess.run(command, cwd=tmp_path / "export", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the same numbers" in done.stdout
    # a table that no longer matches its images: the snippet says so
    exported = pd.read_parquet(tmp_path / "export" / "tables" / "statistics_se.parquet")
    exported.loc[5, "mean"] += 0.01
    exported.to_parquet(tmp_path / "export" / "tables" / "statistics_se.parquet")
    done = subprocess.run(command, cwd=tmp_path / "export", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Not equal to tolerance" in done.stderr


def test_export_all_of_two_checkpoints_holds_both_statistics(tiny_se, photos, tmp_path):
    """The Classes page's one Export all for two checkpoints of a network: the second one's
    statistics beside the first's, each row naming its own weights, and the manifest says
    which weights they are."""
    import json
    import zipfile

    from tiny import randomize_

    files = [("cat.png", photos["chelsea.png"]), ("cup.png", photos["coffee.png"])]
    labels = ["cat", "cup"]
    first = sevis.analyse(tiny_se, files, labels=labels)
    checkpoint = tmp_path / "tiny_se_b.pth"
    torch.save(randomize_(sevis.load_model("tiny_se", "untrained"), seed=5).state_dict(), checkpoint)
    second = sevis.analyse(sevis.load_model("tiny_se", checkpoint), files, labels=labels)
    data = export.analysis_bundle(
        first, files, labels, [], view="Classes", weights_to_load="untrained", png=False, compared=("tiny_se_b", second)
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        mine = pd.read_parquet(io.BytesIO(archive.read("tables/statistics_se.parquet")))
        theirs = pd.read_parquet(io.BytesIO(archive.read("tables/statistics_se_tiny_se_b.parquet")))
    assert manifest["compared_with"]["name"] == "tiny_se_b"
    assert manifest["compared_with"]["weights_sha256"] == second.provenance.weights_sha256 is not None
    assert set(mine["untrained"]) == {True} and set(theirs["weights_sha256"]) == {second.provenance.weights_sha256}
    assert len(mine) == len(theirs) and not np.allclose(mine["mean"], theirs["mean"])  # other weights, other means
