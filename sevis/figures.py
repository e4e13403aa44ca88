"""Plotly figures of SE excitations and SGE masks; arrays in, ``go.Figure`` out.

The class figures reproduce the SENet paper's excitation analysis (arXiv:1709.01507,
TPAMI Figures 6 and 7) for any classes and any layer. Every builder takes plain
arrays or :mod:`sevis.stats` accumulators and never touches a model, so the dashboard,
the HTML report and notebooks draw the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .geometry import CellGrid, upsample
from .stats import ALL, BIN_EDGES, ClassKey, ClassStats, ExcitationStats, MaskStats, NullBand

if TYPE_CHECKING:
    from .explore import ChannelView, ExcitationMap

__all__ = [
    "REFERENCES",
    "UNTRAINED_NOTE",
    "ablation_chart",
    "channel_by_class",
    "class_band_panels",
    "class_histograms",
    "class_profiles",
    "class_profiles_grid",
    "excitation_map_figure",
    "excitation_overview",
    "excitation_profiles",
    "field_profiles",
    "group_activation_spread",
    "group_feature_maps",
    "heat_overlay",
    "mark_untrained",
    "mask_class_stats",
    "mask_grid",
    "sample_channels",
    "selectivity_distribution",
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


def sample_channels(n_channels: int, n: int = 50) -> np.ndarray:
    """``n`` uniformly spaced channel indices, as the paper's Figure 6 (all if fewer)."""
    if n >= n_channels:
        return np.arange(n_channels)
    return np.unique(np.linspace(0, n_channels - 1, n).round().astype(int))


def sort_by_difference(stats: ExcitationStats, layer: str, first: str, second: str) -> np.ndarray:
    """Channel indices ordered by mean(first) - mean(second), largest first."""
    return np.argsort(-(stats.mean(layer, first) - stats.mean(layer, second)), kind="stable")


REFERENCES = ("classes", "images", "both", "none")
"""Reference lines of :func:`class_profiles`: the mean of the class means (the SENet
paper's dotted line, every class weighted equally), the mean over all images, both, none."""
_CLASS_MEANS_LABEL = "mean of class means (paper's reference)"


def class_profiles(
    stats: ExcitationStats,
    layer: str,
    classes: Sequence[str],
    *,
    channels: np.ndarray | None = None,
    band: bool = False,
    reference: str = "both",
    ordered_by: str | None = None,
    difference: tuple[str, str] | None = None,
) -> go.Figure:
    """Mean excitation per channel, one line per class (the paper's Figure 6), with an
    optional +- one standard deviation band (Figure 7).

    Args:
        channels: channel indices to plot, in plotting order (default: all). Increasing
            indices are plotted at their index; any other order at their rank.
        band: shade mean +- the sample standard deviation across the class's images; a
            class of one image has none (its legend says so).
        reference: which reference lines to draw, one of :data:`REFERENCES`: the mean of
            the means of every class in ``stats`` (the paper's, over all its classes,
            dotted; :meth:`ClassStats.mean_of_class_means`), the mean over all images of
            the statistics (dash-dot), both, or none.
        ordered_by: axis title when ``channels`` is a sort order.
        difference: two classes ``(a, b)``: also draw mean(a) − mean(b) per channel on a
            second axis (the curve a sort by their difference makes monotonic).
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    n = len(stats.mean(layer))
    channels = np.arange(n) if channels is None else np.asarray(channels)
    by_index = ordered_by is None and bool(np.all(np.diff(channels) > 0))
    x = channels if by_index else np.arange(len(channels))
    fig = go.Figure()
    lines: list[tuple[str, np.ndarray, np.ndarray | None, str, dict[str, object]]] = []
    for i, cls in enumerate(classes):
        std = stats.std(layer, cls)[channels] if band else None
        label = f"{short_label(cls)} (n={stats.count(cls)}{', no std' if band and stats.count(cls) < 2 else ''})"
        lines.append((label, stats.mean(layer, cls)[channels], std, _colour(i), dict(width=1.5)))
    if reference in ("classes", "both") and stats.classes:
        means = stats.mean_of_class_means(layer)[channels]
        lines.append((_CLASS_MEANS_LABEL, means, None, "#000000", dict(width=2.5, dash="dot")))
    if reference in ("images", "both"):
        label = f"{ALL} (n={stats.count(ALL)})"
        lines.append((label, stats.mean(layer, ALL)[channels], None, _ALL_COLOUR, dict(width=2, dash="dashdot")))
    for label, mean, std, colour, line in lines:
        if std is not None and np.isfinite(std).all():
            fig.add_trace(_band(x, mean, std, colour, 0.15, label))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers" if len(x) <= 64 else "lines",
                name=label,
                legendgroup=label,
                customdata=channels,
                marker=dict(size=4),
                line=dict(color=colour, **line),
                hovertemplate=f"{label}<br>channel %{{customdata}}: %{{y:.3f}}<extra></extra>",
            )
        )
    if difference is not None:
        first, second = difference
        gap = (stats.mean(layer, first) - stats.mean(layer, second))[channels]
        name = f"mean({short_label(first, 20)}) − mean({short_label(second, 20)})"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=gap,
                yaxis="y2",
                mode="lines",
                name=name,
                customdata=channels,
                line=dict(color="#7f7f7f", width=2, dash="dash"),
                hovertemplate=f"{name}<br>channel %{{customdata}}: %{{y:+.3f}}<extra></extra>",
            )
        )
        bound = float(np.abs(gap).max()) if len(gap) else 1.0
        fig.update_layout(
            yaxis2=dict(title="difference", overlaying="y", side="right", range=[-bound * 1.05, bound * 1.05])
        )
    suffix = " ± std" if band else ""
    fig.update_layout(title=f"{layer}: mean excitation per class{suffix}", height=420, **_LAYOUT)
    fig.update_xaxes(title="channel index" if by_index else (ordered_by or "channel (in the chosen order)"))
    fig.update_layout(yaxis=dict(title="mean excitation", range=[0, 1]))
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


def specificity_curve(
    curves: Mapping[str, ClassStats], prefix: str = "SE", nulls: Mapping[str, Mapping[str, NullBand]] | None = None
) -> go.Figure:
    """Class-specificity (omega squared, see :meth:`ClassStats.specificity`) and saturation
    against depth, one line per curve.

    Top: the specificity of each layer, with the band labels get by chance (the central
    95 % of label permutations, :func:`sevis.stats.specificity_null`) where ``nulls``
    gives it. Bottom: saturation of the attention values, the share at or above 0.99 and
    the mean distance from 1, |1 - s|.

    Args:
        curves: legend name -> statistics; each gives one line over its layers (for a
            kind with several summary fields, its first field).
        prefix: the layers' kind, for the titles.
        nulls: legend name -> layer -> null band.
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=["class-specificity ω² (0: chance)", "saturation of the gates"],
    )
    for i, (name, stats) in enumerate(curves.items()):
        frame = stats.specificity_frame()
        colour = _colour(i)
        band = (nulls or {}).get(name, {})
        if band:
            layers = [layer for layer in frame["layer"] if layer in band]
            fig.add_trace(
                go.Scatter(
                    x=[*layers, *layers[::-1]],
                    y=[band[k].high for k in layers] + [band[k].low for k in layers[::-1]],
                    fill="toself",
                    fillcolor=_rgba(colour, 0.15),
                    line=dict(width=0),
                    name=f"{name}: chance (95 % of label permutations)",
                    hoverinfo="skip",
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=frame["layer"],
                y=frame["specificity"],
                mode="lines+markers",
                name=f"{name}: ω²",
                line=dict(color=colour),
                hovertemplate="%{x}: ω² %{y:.3f}<extra>" + name + "</extra>",
            ),
            row=1,
            col=1,
        )
        for column, label, dash in (("share_high", "share ≥ 0.99", None), ("mean_gap", "mean |1 − s|", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=frame["layer"],
                    y=frame[column],
                    mode="lines+markers",
                    name=f"{name}: {label}",
                    line=dict(color=colour, dash=dash),
                    hovertemplate=f"%{{x}}: {label} %{{y:.3f}}<extra>{name}</extra>",
                ),
                row=2,
                col=1,
            )
    fig.update_layout(title=f"Class-specificity and saturation of {prefix} layers against depth", height=560, **_LAYOUT)
    fig.update_xaxes(title_text=f"{prefix} layer (shallow → deep)", row=2, col=1)
    fig.update_yaxes(title_text="ω²", row=1, col=1)
    fig.update_yaxes(title_text="share / distance", range=[0, 1], row=2, col=1)
    return fig


def selectivity_distribution(stats: ClassStats, layers: Sequence[str]) -> go.Figure:
    """Each layer's class selectivity index over its channels (Morcos et al. 2018), as box
    plots in depth order: 0, no class preferred; 1, one class only."""
    fig = go.Figure()
    for layer in layers:
        values = stats.selectivity(layer)
        fig.add_trace(go.Box(y=values[np.isfinite(values)], name=layer, boxpoints=False, marker_color=_colour(0)))
    fig.update_layout(
        title="Class selectivity index of the channels, per layer", height=380, showlegend=False, **_LAYOUT
    )
    fig.update_yaxes(title="(μ_max − μ_−max) / (μ_max + μ_−max)", range=[0, 1])
    fig.update_xaxes(title="layer (shallow → deep)")
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
        grid: where the map's cells sit on the image (:func:`sevis.geometry.cell_grid`);
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


def _band(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray, colour: str, alpha: float, group: str | None = None
) -> go.Scatter:
    """The shaded mean ± std region of a line (the paper's Figure 7 band)."""
    return go.Scatter(
        x=np.concatenate([x, x[::-1]]),
        y=np.concatenate([mean + std, (mean - std)[::-1]]),
        fill="toself",
        fillcolor=_rgba(colour, alpha),
        line=dict(width=0),
        hoverinfo="skip",
        legendgroup=group,
        showlegend=False,
    )


def _class_line(cls: ClassKey, i: int, values: np.ndarray, hover: str, **kwargs: object) -> go.Scatter:
    """One class's values against position (all images: grey and dotted); ``kwargs``
    override the trace's settings."""
    settings: dict[str, object] = dict(
        x=np.arange(len(values)),
        y=values,
        mode="lines+markers",
        name=short_label(str(cls)),
        marker=dict(size=4),
        line=dict(color=_ALL_COLOUR if cls is ALL else _colour(i), dash="dot" if cls is ALL else None),
        hovertemplate=f"{cls}<br>{hover} %{{x}}: %{{y:.4f}}<extra></extra>",
    )
    return go.Scatter(**{**settings, **kwargs})


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


def group_activation_spread(stats: MaskStats, layer: str, classes: Sequence[str]) -> go.Figure:
    """The SGE paper's statistics of group activations: per group, the spread of its
    feature norms over the positions, before and after SGE, as std / mean (so a group that
    SGE scales down as a whole keeps its spread; SGE keeping large activations and pushing
    small ones towards 0 raises it). One pair of lines for all images, and the after-SGE line
    of each class."""
    fig = go.Figure()

    def spread(cls: ClassKey, when: str) -> np.ndarray:
        mean = stats.mean(layer, cls, f"norm_mean_{when}")
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(stats.mean(layer, cls, f"norm_var_{when}")) / mean

    for when, dash in (("before", "dot"), ("after", None)):
        values = spread(ALL, when)
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(values)),
                y=values,
                mode="lines+markers",
                name=f"{ALL}, {when} SGE",
                marker=dict(size=4),
                line=dict(color=_ALL_COLOUR, dash=dash),
                hovertemplate=f"{when} SGE<br>group %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    for i, cls in enumerate(classes):
        fig.add_trace(_class_line(cls, i, spread(cls, "after"), "group", name=f"{short_label(cls)}, after SGE"))
    fig.update_layout(title=f"{layer}: spread of each group's activations before and after SGE", height=420, **_LAYOUT)
    fig.update_xaxes(title="group")
    fig.update_yaxes(title="std / mean of the feature norm over positions", rangemode="tozero")
    return fig


def group_feature_maps(before: np.ndarray, after: np.ndarray, groups: Sequence[int], layer: str) -> go.Figure:
    """The SGE paper's per-group view: the feature map of each group (the norm over its
    channels at each position) before and after SGE, side by side. Each row is divided by
    the maximum of its before-map, so before and after share one [0, 1] scale and after
    shows what SGE kept.

    Args:
        before, after: (G, H, W) feature norms of one image (see
            :meth:`sevis.kinds.SGEKind.module_values`).
        groups: the groups to show, one row each.
    """
    fig = make_subplots(
        rows=len(groups),
        cols=2,
        horizontal_spacing=0.04,
        vertical_spacing=0.3 / max(len(groups), 1),
        subplot_titles=[f"group {g}: {when} SGE" for g in groups for when in ("before", "after")],
    )
    for row, g in enumerate(groups, start=1):
        scale = float(before[g].max()) or 1.0
        for col, maps in ((1, before), (2, after)):
            fig.add_trace(
                go.Heatmap(
                    z=maps[g] / scale,
                    zmin=0,
                    zmax=1,
                    colorscale="Viridis",
                    showscale=row == 1 and col == 2,
                    colorbar=dict(title="norm / max before"),
                    hovertemplate=f"group {g}<br>x %{{x}}, y %{{y}}: %{{z:.3f}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
    fig.update_layout(
        title=f"{layer}: group feature maps before and after SGE", height=230 * len(groups) + 100, **_LAYOUT
    )
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, autorange="reversed")
    for k in range(1, 2 * len(groups) + 1):  # square cells: each panel's y follows its own x
        fig.update_layout({f"yaxis{k if k > 1 else ''}": dict(scaleanchor=f"x{k if k > 1 else ''}")})
    return fig


def mask_class_stats(stats: MaskStats, layer: str, classes: Sequence[str], *, band: bool = False) -> go.Figure:
    """Per group: mean mask value and spatial variance, one line per class; with ``band``,
    the mean mask value ± one standard deviation across the class's images (as the SE
    profiles' Figure 7 band)."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=["mean mask value", "spatial variance of the mask"]
    )
    keys: list[ClassKey] = [*classes, ALL]
    for i, cls in enumerate(keys):
        if band and cls is not ALL and stats.count(cls) > 1:
            mean, std = stats.group_mean(layer, cls), stats.std(layer, cls, "mean")
            fig.add_trace(_band(np.arange(len(mean)), mean, std, _colour(i), 0.15, repr(cls)), row=1, col=1)
        for row, values in ((1, stats.group_mean(layer, cls)), (2, stats.group_variance(layer, cls))):
            trace = _class_line(cls, i, values, "group", legendgroup=repr(cls), showlegend=row == 1)
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(title=f"{layer}: SGE mask statistics per class", height=520, **_LAYOUT)
    fig.update_xaxes(title_text="group", row=2, col=1)
    fig.update_yaxes(title_text="mean σ(a)", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="variance", rangemode="tozero", row=2, col=1)
    return fig


def channel_by_class(view: ChannelView, classes: Sequence[str] | None = None, max_classes: int = 12) -> go.Figure:
    """One channel's (or group's) value per image, a box per class (the classes given, or
    the ``max_classes`` with the highest mean), every image a point; hover names the image."""
    frame = view.by_class()
    if classes is None:
        ranked = sorted(view.class_means, key=view.class_means.__getitem__, reverse=True)
        classes = ranked[:max_classes]
    fig = go.Figure()
    for i, cls in enumerate(classes):
        rows = frame[frame.label == cls]
        fig.add_trace(
            go.Box(
                y=rows.value,
                name=short_label(cls, 24),
                text=rows.image,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker=dict(color=_colour(i), size=5),
                hovertemplate="%{text}<br>%{y:.4f}<extra>" + short_label(cls) + "</extra>",
            )
        )
    selectivity = "" if view.selectivity is None else f" · selectivity {view.selectivity:.3f}"
    fig.update_layout(
        **_LAYOUT,
        title=f"{view.layer}, {view.index_name} {view.channel}: per class{selectivity}",
        yaxis_title="excitation" if view.index_name == "channel" else "mask mean",
        showlegend=False,
        height=420,
    )
    return fig


def excitation_map_figure(emap: ExcitationMap, max_classes: int = 12) -> go.Figure:
    """The images as points, coloured by class (the ``max_classes`` largest classes; the
    others grey), class centroids as crosses; hover names the image."""
    points = emap.points
    counts = points.label.value_counts()
    shown = list(counts.index[:max_classes])
    fig = go.Figure()
    others = points[~points.label.isin(shown)]
    if len(others):
        fig.add_trace(
            go.Scattergl(
                x=others.x,
                y=others.y,
                mode="markers",
                name=f"{others.label.nunique()} other classes",
                marker=dict(color="#bbbbbb", size=4),
                text=others.label + "<br>" + others.image,
                hovertemplate="%{text}<extra></extra>",
            )
        )
    for i, cls in enumerate(shown):
        rows = points[points.label == cls]
        fig.add_trace(
            go.Scattergl(
                x=rows.x,
                y=rows.y,
                mode="markers",
                name=short_label(cls, 24),
                marker=dict(color=_colour(i), size=6),
                text=rows.image,
                hovertemplate="%{text}<extra>" + short_label(cls) + "</extra>",
            )
        )
    centres = emap.centroids[emap.centroids.label.isin(shown)]
    fig.add_trace(
        go.Scatter(
            x=centres.x,
            y=centres.y,
            mode="markers",
            name="class means",
            marker=dict(symbol="x", size=12, color="black"),
            text=centres.label,
            hovertemplate="%{text} (mean)<extra></extra>",
        )
    )
    axes = ("UMAP 1", "UMAP 2")
    if emap.explained is not None:
        axes = (f"PC 1 ({emap.explained[0]:.0%})", f"PC 2 ({emap.explained[1]:.0%})")
    drawn = (
        f"{len(points):,} of {emap.images:,} images drawn" if len(points) < emap.images else f"{emap.images:,} images"
    )
    fig.update_layout(
        **_LAYOUT,
        title=f"{emap.layer}: images by excitation ({emap.method.upper()}, {drawn}, separation {emap.separation:.2f})",
        xaxis_title=axes[0],
        yaxis_title=axes[1],
        height=520,
    )
    return fig


def ablation_chart(table: pd.DataFrame) -> go.Figure:
    """Top-1 and top-5 accuracy per knock-out condition (the SENet paper's Table 13 as bars),
    the change against nothing removed in the hover."""
    fig = go.Figure()
    for i, metric in enumerate(("top1", "top5")):
        if metric not in table:
            continue
        fig.add_trace(
            go.Bar(
                x=table.condition,
                y=table[metric],
                name=metric.replace("top", "top-"),
                marker_color=_colour(i),
                customdata=table[f"{metric}_change"],
                hovertemplate="%{x}: %{y:.2%} (%{customdata:+.2%})<extra>" + metric + "</extra>",
            )
        )
    fig.update_layout(
        **_LAYOUT,
        title=f"Accuracy with attention removed ({int(table['images'].iloc[0]):,} labelled images)",
        yaxis=dict(title="accuracy", tickformat=".0%", rangemode="tozero"),
        barmode="group",
        height=420,
    )
    return fig


def class_profiles_grid(
    stats: ExcitationStats,
    layers: Sequence[str],
    classes: Sequence[str],
    *,
    channels: int = 50,
    columns: int = 3,
) -> go.Figure:
    """The SENet paper's Figure 6 as published: small multiples of several layers at once
    (default the paper's six, :func:`sevis.paper_layers`), each the mean excitation of
    ``channels`` uniformly spaced channels per class, a line per class in the same colour
    in every panel, and the mean of the class means dotted (the paper's reference).

    Each line's ``customdata`` holds its channel indices and ``meta`` its layer."""
    rows = -(-len(layers) // columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=list(layers),
        horizontal_spacing=0.06,
        vertical_spacing=0.28 / max(rows, 1),
    )
    for k, layer in enumerate(layers):
        row, col = k // columns + 1, k % columns + 1
        picked = sample_channels(len(stats.mean(layer)), channels)
        lines = [
            (short_label(cls), stats.mean(layer, cls)[picked], _colour(i), "solid") for i, cls in enumerate(classes)
        ]
        if stats.classes:
            lines.append((_CLASS_MEANS_LABEL, stats.mean_of_class_means(layer)[picked], "#000000", "dot"))
        for name, values, colour, dash in lines:
            fig.add_trace(
                go.Scatter(
                    x=picked,
                    y=values,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=k == 0,
                    customdata=picked,
                    meta=layer,
                    marker=dict(size=3),
                    line=dict(color=colour, width=2.5 if dash == "dot" else 1.5, dash=dash),
                    hovertemplate=f"{name}<br>{layer} channel %{{customdata}}: %{{y:.3f}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
        fig.update_yaxes(range=[0, 1], row=row, col=col)
    fig.update_layout(
        **_LAYOUT,
        title=f"Mean excitation per class in {len(layers)} layers ({channels} channels each; the paper's Figure 6)",
        height=300 * rows + 120,
    )
    return fig


def class_band_panels(
    stats: ExcitationStats, layer: str, classes: Sequence[str], *, channels: np.ndarray | None = None
) -> go.Figure:
    """The SENet paper's Figure 7: for each class (two, side by side, as the paper; up to
    four), its mean excitation ± one standard deviation across its images, over the same
    channels, with the mean of the class means dotted in every panel."""
    shown = list(classes)[:4]
    n = len(stats.mean(layer))
    picked = sample_channels(n, 50) if channels is None else np.asarray(channels)
    fig = make_subplots(rows=1, cols=len(shown), shared_yaxes=True, subplot_titles=[short_label(c) for c in shown])
    reference = stats.mean_of_class_means(layer)[picked]
    for k, cls in enumerate(shown, start=1):
        mean, std = stats.mean(layer, cls)[picked], stats.std(layer, cls)[picked]
        colour = _colour(k - 1)
        if np.isfinite(std).all():
            fig.add_trace(_band(picked, mean, std, colour, 0.2), row=1, col=k)
        fig.add_trace(
            go.Scatter(
                x=picked,
                y=mean,
                mode="lines",
                name=f"{short_label(cls)} (n={stats.count(cls)})",
                customdata=picked,
                meta=layer,
                line=dict(color=colour, width=1.5),
                hovertemplate=f"{short_label(cls)}<br>channel %{{customdata}}: %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=k,
        )
        fig.add_trace(
            go.Scatter(
                x=picked,
                y=reference,
                mode="lines",
                name=_CLASS_MEANS_LABEL,
                legendgroup="reference",
                showlegend=k == 1,
                line=dict(color="#000000", width=2, dash="dot"),
                hoverinfo="skip",
            ),
            row=1,
            col=k,
        )
        fig.update_yaxes(range=[0, 1], row=1, col=k)
        fig.update_xaxes(title_text="channel index", row=1, col=k)
    fig.update_layout(
        **_LAYOUT, title=f"{layer}: mean excitation ± one std across images (the paper's Figure 7)", height=420
    )
    return fig
