"""Exports of statistics and figures: tables, CSV, Parquet, PNG, standalone HTML (as bytes)."""

from __future__ import annotations

import io
import os
import shutil
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .provenance import Provenance

if TYPE_CHECKING:
    from .analysis import ImageResult

__all__ = [
    "figure_html",
    "figure_png",
    "frame_csv",
    "frame_parquet",
    "grid_frame",
    "png_available",
    "top_frame",
    "with_provenance",
]


def with_provenance(frame: pd.DataFrame, provenance: Provenance) -> pd.DataFrame:
    """The frame with leading ``model``, ``weights``, ``weights_sha256`` and ``untrained``
    columns, so an exported table always says which weights produced it."""
    out = frame.copy()
    for i, (column, value) in enumerate(provenance.columns().items()):
        out.insert(i, column, value)
    return out


def top_frame(image: ImageResult) -> pd.DataFrame:
    """One image's predictions: image, rank, class, probability."""
    return pd.DataFrame(
        {
            "image": image.name,
            "rank": range(1, len(image.top_classes) + 1),
            "class": image.top_classes,
            "probability": image.top_probs,
        }
    )


def grid_frame(values: np.ndarray, column: str) -> pd.DataFrame:
    """A 2-D map as a long table: y, x, value."""
    y, x = np.indices(values.shape)
    return pd.DataFrame({"y": y.ravel(), "x": x.ravel(), column: values.ravel()})


def frame_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def frame_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def figure_html(fig: go.Figure) -> bytes:
    """A standalone page: plotly.js inlined, opens without a network."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()


def png_available() -> bool:
    """Whether :func:`figure_png` can work here: kaleido needs a Chrome or Chromium."""
    if os.environ.get("BROWSER_PATH"):
        return True
    return any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome"))


def figure_png(fig: go.Figure, scale: float = 2.0) -> bytes:
    """PNG through kaleido, which drives a local Chrome/Chromium.

    Raises:
        RuntimeError: no Chromium for kaleido; the message says what to install.
    """
    try:
        return fig.to_image(format="png", scale=scale, width=fig.layout.width or 1000, height=fig.layout.height or 500)
    except Exception as err:  # kaleido raises its own types when Chrome is missing
        raise RuntimeError(
            f"PNG export needs kaleido and a Chrome or Chromium browser ({err}); "
            "the chart's camera icon saves a PNG from the browser instead"
        ) from err
