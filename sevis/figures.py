"""Plotly figures of SE excitations and SGE masks; arrays in, ``go.Figure`` out.

The class figures reproduce the SENet paper's excitation analysis (arXiv:1709.01507,
TPAMI Figures 6 and 7) for any classes and any layer. Every builder takes plain
arrays or :mod:`sevis.stats` accumulators and never touches a model, so the dashboard,
the HTML report and notebooks draw the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .stats import ALL, BIN_EDGES, ClassKey, ClassStats, ExcitationStats, MaskStats

__all__ = [
    "UNTRAINED_NOTE",
    "class_histograms",
    "class_profiles",
    "excitation_overview",
    "excitation_profiles",
    "field_profiles",
    "heat_overlay",
    "mark_untrained",
    "mask_class_stats",
    "mask_grid",
    "sample_channels",
    "short_label",
    "sort_by_difference",
    "specificity_curve",
    "top_classes",
    "upsample",
]

_COLOURS = qualitative.Plotly
_ALL_COLOUR = "#444444"
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=60, b=50))


def short_label(name: str, width: int = 32) -> str:
    """An ImageNet description shortened for legends: 'goldfish, Carassius auratus'
    stays whole if it fits, else is cut at ``width`` with an ellipsis."""
    return name if len(name) <= width else name[: width - 1].rstrip(", ") + "…"


def _colour(i: int) -> str:
    return _COLOURS[i % len(_COLOURS)]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


UNTRAINED_NOTE = "UNTRAINED WEIGHTS (random init): not the paper's model"


def mark_untrained(fig: go.Figure) -> go.Figure:
    """Stamp a figure made with random weights under its title, so that no export of
    it can be mistaken for the real model's."""
    title = fig.layout.title.text or ""
    fig.update_layout(
        title_text=f"{title}<br><span style='font-size:13px;color:#b00020'>{UNTRAINED_NOTE}</span>",
        margin_t=max(fig.layout.margin.t or 0, 85),
    )
    return fig


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
    """Excitation against channel index, one panel per layer, one line per image.

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
                    mode="lines",
                    name=short_label(image),
                    legendgroup=image,
                    showlegend=row == 1,
                    line=dict(width=1, color=_colour(i)),
                    hovertemplate=f"{image}<br>{layer} channel %{{x}}: %{{y:.3f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
            fig.update_yaxes(title_text="excitation", range=[0, 1], row=row, col=1)
    fig.update_xaxes(title_text="channel index", row=len(layers), col=1)
    fig.update_layout(
        title="SE excitation per channel",
        height=170 * len(layers) + 120,
        showlegend=len(profiles) > 1,
        **_LAYOUT,
    )
    return fig


def excitation_overview(excitations: Mapping[str, np.ndarray], bins: int = 128) -> go.Figure:
    """Heatmap of every SE layer at once: rows are layers, columns channel positions.

    Layers have 256 to 2048 channels, so each row is averaged into ``bins`` equal
    slices of its channel range (the hover shows which channels).
    """
    layers = list(excitations)
    z = np.empty((len(layers), bins))
    spans = []
    for r, layer in enumerate(layers):
        v = np.asarray(excitations[layer], dtype=np.float64)
        # NOTE with fewer channels than bins a bin repeats its channel rather than go empty.
        edges = np.linspace(0, len(v), bins + 1).astype(int)
        slices = [(min(a, len(v) - 1), max(b, min(a, len(v) - 1) + 1)) for a, b in pairwise(edges)]
        z[r] = [v[a:b].mean() for a, b in slices]
        spans.append([f"{a}–{b - 1}" for a, b in slices])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            y=layers,
            x=(np.arange(bins) + 0.5) / bins,
            customdata=np.array(spans),
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar=dict(title="excitation"),
            hovertemplate="%{y} channels %{customdata}: mean %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title="All SE layers (channels binned)", height=120 + 24 * len(layers), **_LAYOUT)
    fig.update_xaxes(title="relative channel position", range=[0, 1])
    fig.update_yaxes(title="layer", autorange="reversed")
    return fig


def sample_channels(n_channels: int, n: int = 50) -> np.ndarray:
    """``n`` uniformly spaced channel indices, as the paper's Figure 6 (all if fewer)."""
    if n >= n_channels:
        return np.arange(n_channels)
    return np.unique(np.linspace(0, n_channels - 1, n).round().astype(int))


def sort_by_difference(stats: ExcitationStats, layer: str, first: str, second: str) -> np.ndarray:
    """Channel indices ordered by mean(first) - mean(second), largest first."""
    return np.argsort(-(stats.mean(layer, first) - stats.mean(layer, second)), kind="stable")


def class_profiles(
    stats: ExcitationStats,
    layer: str,
    classes: Sequence[str],
    *,
    channels: np.ndarray | None = None,
    band: bool = False,
    include_all: bool = True,
    ordered_by: str | None = None,
) -> go.Figure:
    """Mean excitation per channel, one line per class (the paper's Figure 6), with an
    optional +- one standard deviation band (Figure 7).

    Args:
        channels: channel indices to plot, in plotting order (default: all). Increasing
            indices are plotted at their index; any other order at their rank.
        band: shade mean +- standard deviation across the class's images.
        include_all: add the mean over all images as a reference line.
        ordered_by: axis title when ``channels`` is a sort order.
    """
    n = len(stats.mean(layer))
    channels = np.arange(n) if channels is None else np.asarray(channels)
    by_index = ordered_by is None and bool(np.all(np.diff(channels) > 0))
    x = channels if by_index else np.arange(len(channels))
    fig = go.Figure()
    series: list[tuple[ClassKey, str]] = [(c, _colour(i)) for i, c in enumerate(classes)]
    if include_all:
        series.append((ALL, _ALL_COLOUR))
    for cls, colour in series:
        mean = stats.mean(layer, cls)[channels]
        label = f"{short_label(str(cls))} (n={stats.count(cls)})"
        if band:
            std = stats.std(layer, cls)[channels]
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([x, x[::-1]]),
                    y=np.concatenate([mean + std, (mean - std)[::-1]]),
                    fill="toself",
                    fillcolor=_rgba(colour, 0.15),
                    line=dict(width=0),
                    hoverinfo="skip",
                    legendgroup=repr(cls),
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers" if len(x) <= 64 else "lines",
                name=label,
                legendgroup=repr(cls),
                customdata=channels,
                marker=dict(size=4),
                line=dict(color=colour, width=2.5 if cls is ALL else 1.5, dash="dot" if cls is ALL else None),
                hovertemplate=f"{cls}<br>channel %{{customdata}}: %{{y:.3f}}<extra></extra>",
            )
        )
    suffix = " ± std" if band else ""
    fig.update_layout(title=f"{layer}: mean excitation per class{suffix}", height=420, **_LAYOUT)
    fig.update_xaxes(title="channel index" if by_index else (ordered_by or "channel (in the chosen order)"))
    fig.update_yaxes(title="mean excitation", range=[0, 1])
    return fig


def class_histograms(
    stats: ExcitationStats, layer: str, classes: Sequence[str], *, side_by_side: bool = False
) -> go.Figure:
    """Distribution of excitation values per class (share of values per bin)."""
    centres = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2
    fig = make_subplots(
        rows=1,
        cols=len(classes) if side_by_side else 1,
        shared_yaxes=True,
        subplot_titles=[short_label(c) for c in classes] if side_by_side else None,
    )
    for i, cls in enumerate(classes):
        hist = stats.histogram(layer, cls)
        share = hist / max(hist.sum(), 1)
        fig.add_trace(
            go.Bar(
                x=centres,
                y=share,
                width=BIN_EDGES[1] - BIN_EDGES[0],
                name=short_label(cls),
                marker_color=_colour(i),
                opacity=1.0 if side_by_side else 0.55,
                hovertemplate=f"{cls}<br>%{{x:.2f}}: %{{y:.1%}}<extra></extra>",
            ),
            row=1,
            col=i + 1 if side_by_side else 1,
        )
    fig.update_layout(
        title=f"{layer}: distribution of excitation values per class",
        barmode="overlay",
        height=360,
        **_LAYOUT,
    )
    fig.update_xaxes(title_text="excitation", range=[0, 1])
    fig.update_yaxes(title_text="share of values", tickformat=".0%", col=1)
    return fig


def specificity_curve(curves: Mapping[str, ClassStats], prefix: str = "SE") -> go.Figure:
    """Class-specificity (variance share explained by the class) against depth.

    Args:
        curves: legend name -> statistics; each gives one line over its layers (for a
            kind with several summary fields, its first field).
        prefix: the layers' kind, for the titles.
    """
    fig = go.Figure()
    for i, (name, stats) in enumerate(curves.items()):
        frame = stats.specificity_frame()
        fig.add_trace(
            go.Scatter(
                x=frame["layer"],
                y=frame["specificity"],
                mode="lines+markers",
                name=name,
                line=dict(color=_colour(i)),
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(title=f"Class-specificity of {prefix} layers against depth", height=380, **_LAYOUT)
    fig.update_xaxes(title=f"{prefix} layer (shallow → deep)")
    fig.update_yaxes(title="share of variance explained by class", rangemode="tozero")
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


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) map to ``size`` = (H, W), cell centres aligned."""
    t = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def heat_overlay(
    view: np.ndarray,
    heat: np.ndarray,
    *,
    title: str,
    opacity: float = 0.5,
    colorscale: str = "Jet",
    zrange: tuple[float, float] | None = (0.0, 1.0),
    colorbar_title: str = "",
) -> go.Figure:
    """A map over the image the model saw, upsampled to its pixels.

    Args:
        view: the model's crop, (H, W, 3) uint8 (see :func:`sevis.model_view`).
        heat: (h, w) map over the same field of view, e.g. a mean SGE mask.
        opacity: of the map over the image, 0 to 1.
        zrange: colour range; None stretches it over the map's own range, which shows
            structure in a mean of many masks that all sit near one value.
    """
    h, w = view.shape[:2]
    fig = go.Figure(go.Image(z=view, hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=upsample(heat, (h, w)),
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


def _class_line(cls: ClassKey, i: int, values: np.ndarray, hover: str, **kwargs: object) -> go.Scatter:
    """One class's values against position (all images: grey and dotted)."""
    return go.Scatter(
        x=np.arange(len(values)),
        y=values,
        mode="lines+markers",
        name=short_label(str(cls)),
        marker=dict(size=4),
        line=dict(color=_ALL_COLOUR if cls is ALL else _colour(i), dash="dot" if cls is ALL else None),
        hovertemplate=f"{cls}<br>{hover} %{{x}}: %{{y:.4f}}<extra></extra>",
        **kwargs,
    )


def field_profiles(stats: ClassStats, layer: str, classes: Sequence[str], field: str) -> go.Figure:
    """One summary field of any attention kind: its mean per position, one line per
    class and one for all images (dotted)."""
    fig = go.Figure()
    keys: list[ClassKey] = [*classes, ALL]
    for i, cls in enumerate(keys):
        fig.add_trace(_class_line(cls, i, stats.mean(layer, cls, field), stats.index_name))
    fig.update_layout(title=f"{layer}: mean {field} per class", height=400, **_LAYOUT)
    fig.update_xaxes(title=stats.index_name)
    fig.update_yaxes(title=f"mean {field}")
    return fig


def mask_class_stats(stats: MaskStats, layer: str, classes: Sequence[str]) -> go.Figure:
    """Per group: mean mask value and spatial variance, one line per class."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=["mean mask value", "spatial variance of the mask"]
    )
    keys: list[ClassKey] = [*classes, ALL]
    for i, cls in enumerate(keys):
        for row, values in ((1, stats.group_mean(layer, cls)), (2, stats.group_variance(layer, cls))):
            trace = _class_line(cls, i, values, "group", legendgroup=repr(cls), showlegend=row == 1)
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(title=f"{layer}: SGE mask statistics per class", height=520, **_LAYOUT)
    fig.update_xaxes(title_text="group", row=2, col=1)
    fig.update_yaxes(title_text="mean σ(a)", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="variance", rangemode="tozero", row=2, col=1)
    return fig
