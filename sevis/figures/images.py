"""Figures of single images: top classes, excitation lines per layer, masks and overlays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..attention.geometry import CellGrid, upsample

if TYPE_CHECKING:
    pass
from ._style import _LAYOUT, _colour, short_label

__all__ = ["excitation_overview", "excitation_profiles", "heat_overlay", "mask_grid", "top_classes"]


def top_classes(classes: Sequence[str], probs: Sequence[float], title: str = "Top-5 predictions") -> go.Figure:
    """Horizontal bars, most probable on top."""
    fig = go.Figure(
        go.Bar(
            x=list(probs)[::-1],
            y=[short_label(c, 40) for c in classes][::-1],
            orientation="h",
            text=[f"{p:.1%}" for p in probs][::-1],
            textposition="auto",
            hovertext=list(classes)[::-1],
            hoverinfo="text+x",
        )
    )
    fig.update_layout(title=title, height=260, **_LAYOUT)
    fig.update_xaxes(title="probability", range=[0, 1], tickformat=".0%")
    return fig


def excitation_profiles(profiles: Mapping[str, Mapping[str, np.ndarray]], layers: Sequence[str]) -> go.Figure:
    """Excitation against channel index, one panel per layer, one line per image; each
    line's ``meta`` is its layer and its points (small markers) can be clicked.

    Args:
        profiles: image name -> {layer: excitation vector (C,)}.
        layers: the layers to show, top to bottom.
    """
    fig = make_subplots(
        rows=len(layers), cols=1, subplot_titles=list(layers), vertical_spacing=0.35 / max(len(layers), 1)
    )
    for i, (image, vectors) in enumerate(profiles.items()):
        for row, layer in enumerate(layers, start=1):
            y = np.asarray(vectors[layer])
            fig.add_trace(
                go.Scatter(
                    x=np.arange(len(y)),
                    y=y,
                    mode="lines+markers",  # markers: a line alone cannot be clicked (Plotly selects markers)
                    name=short_label(image),
                    legendgroup=image,
                    showlegend=row == 1,
                    meta=layer,
                    marker=dict(size=2, color=_colour(i)),
                    line=dict(width=1, color=_colour(i)),
                    hovertemplate=f"{image}<br>{layer} channel %{{x}}: %{{y:.3f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
            fig.update_yaxes(title_text="excitation", range=[0, 1], row=row, col=1)
    fig.update_xaxes(title_text="channel index", row=len(layers), col=1)
    fig.update_layout(
        title="SE excitation per channel"
        + (f": {short_label(next(iter(profiles)), 48)}" if len(profiles) == 1 else ""),
        height=170 * len(layers) + 120,
        showlegend=len(profiles) > 1,
        **_LAYOUT,
    )
    return fig


def excitation_overview(excitations: Mapping[str, np.ndarray], bins: int = 128) -> go.Figure:
    """Heatmaps of every SE layer at once: rows are layers, columns channel positions.

    Layers have 256 to 2048 channels, so each row is cut into ``bins`` equal slices of its
    channel range (the hover shows which channels): the left panel shows each slice's
    mean, the right its maximum, so a single saturated channel is never averaged away.
    """
    layers = list(excitations)
    mean, peak = np.empty((len(layers), bins)), np.empty((len(layers), bins))
    spans = []
    for r, layer in enumerate(layers):
        v = np.asarray(excitations[layer], dtype=np.float64)
        # NOTE with fewer channels than bins a bin repeats its channel rather than go empty.
        edges = np.linspace(0, len(v), bins + 1).astype(int)
        slices = [(min(a, len(v) - 1), max(b, min(a, len(v) - 1) + 1)) for a, b in pairwise(edges)]
        mean[r] = [v[a:b].mean() for a, b in slices]
        peak[r] = [v[a:b].max() for a, b in slices]
        spans.append([f"{a}–{b - 1}" for a, b in slices])
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.03, subplot_titles=["mean per bin", "max per bin"]
    )
    for col, (z, what) in enumerate(((mean, "mean"), (peak, "max")), start=1):
        fig.add_trace(
            go.Heatmap(
                z=z,
                y=layers,
                x=(np.arange(bins) + 0.5) / bins,
                customdata=np.array(spans),
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == 2,
                colorbar=dict(title="excitation"),
                hovertemplate=f"%{{y}} channels %{{customdata}}: {what} %{{z:.3f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title="relative channel position", range=[0, 1], row=1, col=col)
    fig.update_layout(title="All SE layers (channels binned)", height=140 + 24 * len(layers), **_LAYOUT)
    fig.update_yaxes(title="layer", autorange="reversed", row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    return fig


def mask_grid(masks: np.ndarray, layer: str, columns: int = 8) -> go.Figure:
    """All G spatial masks of one layer, tiled ``columns`` wide. masks: (G, H, W)."""
    g, h, w = masks.shape
    rows = -(-g // columns)
    tile = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    group = np.full(tile.shape, -1)
    for k in range(g):
        r, c = divmod(k, columns)
        tile[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = masks[k]
        group[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = k
    fig = go.Figure(
        go.Heatmap(
            z=tile,
            customdata=group,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar=dict(title="mask σ(a)"),
            hovertemplate="group %{customdata}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=f"{layer}: the {g} group masks ({h}×{w} each)", height=560, **_LAYOUT)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title=f"{columns} groups per row")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x")
    return fig


def heat_overlay(
    view: np.ndarray,
    heat: np.ndarray,
    *,
    title: str,
    opacity: float = 0.5,
    colorscale: str = "Viridis",
    zrange: tuple[float, float] | None = (0.0, 1.0),
    colorbar_title: str = "",
    grid: CellGrid | None = None,
) -> go.Figure:
    """A map over the image the model saw, upsampled to its pixels.

    Args:
        view: the model's crop, (H, W, 3) uint8 (see :func:`sevis.model_view`).
        heat: (h, w) map over the same field of view, e.g. a mean SGE mask.
        opacity: of the map over the image, 0 to 1.
        colorscale: perceptually uniform by default (Viridis), so equal steps of value
            look like equal steps of colour.
        zrange: colour range, fixed to [0, 1] by default: masks and normalised maps of
            different images and layers compare by colour. None stretches it over the map's
            own range (say so in the title: a map spanning 0.49 to 0.51 then fills the scale).
        grid: where the map's cells sit on the image (:func:`sevis.attention.geometry.cell_grid`);
            with it each value is drawn at its receptive field's centre, without it the
            cells are spread evenly (half a cell off).
    """
    h, w = view.shape[:2]
    fig = go.Figure(go.Image(z=view, hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=upsample(heat, (h, w), grid),
            opacity=opacity,
            colorscale=colorscale,
            zmin=zrange[0] if zrange else None,
            zmax=zrange[1] if zrange else None,
            colorbar=dict(title=colorbar_title),
            hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, height=460, **_LAYOUT)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, scaleanchor="x")
    return fig
