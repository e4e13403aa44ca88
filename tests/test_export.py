"""Exports are real files of their type, and carry the weights they came from."""

from __future__ import annotations

import io

import pandas as pd
import plotly.graph_objects as go
import pyarrow.parquet as pq
import pytest

import sevis
from sevis import export
from sevis.figures import mark_untrained


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"layer": ["SE_2_1", "SE_2_1"], "channel": [0, 1], "mean": [0.25, 0.75]})


def test_provenance_columns_lead(frame):
    out = export.with_provenance(frame, sevis.Provenance("se_resnet50", "untrained", True))
    assert list(out.columns) == ["model", "weights", "weights_sha256", "untrained", "layer", "channel", "mean"]
    assert out["untrained"].all() and list(frame.columns) == ["layer", "channel", "mean"]


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
