"""Plotly figures of SE excitations and SGE masks; arrays in, ``go.Figure`` out.

The class figures reproduce the SENet paper's excitation analysis (arXiv:1709.01507,
TPAMI Figures 6 and 7) for any classes and any layer. Every builder takes plain
arrays or :mod:`sevis.stats` accumulators and never touches a model, so the dashboard,
the HTML report and notebooks draw the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..stats._accumulators import BIN_EDGES
from ..stats.classes import ALL, ClassKey, ClassStats
from ..stats.measures import NullBand
from ..stats.se import ExcitationStats

if TYPE_CHECKING:
    pass
from ._style import _ALL_COLOUR, _LAYOUT, _band, _class_line, _colour, _rgba, short_label

__all__ = [
    "REFERENCES",
    "checkpoint_difference",
    "class_band_panels",
    "class_histograms",
    "class_profiles",
    "class_profiles_grid",
    "field_profiles",
    "reference_difference",
    "sample_channels",
    "selectivity_distribution",
    "sort_by_difference",
    "specificity_comparison",
    "specificity_curve",
]


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
                mode="lines+markers",  # markers: a line alone cannot be clicked (Plotly selects markers)
                name=label,
                legendgroup=label,
                customdata=channels,
                marker=dict(size=4 if len(x) <= 64 else 2),
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
                mode="lines+markers",
                name=name,
                customdata=channels,
                marker=dict(size=2),
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
    stats: ClassStats, layer: str, classes: Sequence[str], *, side_by_side: bool = False, value: str = "excitation"
) -> go.Figure:
    """Distribution of the counted attention values per class (share of values per bin):
    SE's excitations; ``value`` names them (a branch gate counts each channel's largest
    branch weight)."""
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
        title=f"{layer}: distribution of {value} values per class",
        barmode="overlay",
        height=360,
        **_LAYOUT,
    )
    fig.update_xaxes(title_text=value, range=[0, 1])
    fig.update_yaxes(title_text="share of values", tickformat=".0%", col=1)
    return fig


def _band_note(band: NullBand) -> str:
    """What a chance band is, for its hover."""
    if not band.images:
        return f"ω² of the same images with the labels shuffled ({band.permutations} permutations)"
    return (
        f"ω² of the same {band.images:,} images with their labels shuffled, {band.permutations} times:<br>"
        f"the ω² of labels that carry no class information falls inside with probability {band.coverage:.1%}"
    )


def specificity_curve(
    curves: Mapping[str, ClassStats],
    prefix: str = "SE",
    nulls: Mapping[str, Mapping[str, NullBand]] | None = None,
    difference: tuple[str, str] | None = None,
) -> go.Figure:
    """Class-specificity (omega squared, see :meth:`ClassStats.specificity`) and saturation
    against depth, one line per curve.

    Top: the specificity of each layer, with the band labels get by chance (the band of
    199 label permutations that holds the statistic of uninformative labels with
    probability 95 %, :func:`sevis.stats.specificity_null`) where ``nulls`` gives it.
    Bottom: saturation of the attention values, the share at or above 0.99 and the mean
    distance from 1, |1 - s|; a curve whose statistics counted no values (a saved SGE run
    keeps per-image summaries, not the masks) draws none, and with none the panel says so.

    Args:
        curves: legend name -> statistics; each gives one line over its layers (for a
            kind with several summary fields, its first field).
        prefix: the layers' kind, for the titles.
        nulls: legend name -> layer -> null band.
        difference: two curves' names, ``(a, b)``: a third panel draws ω²(a) − ω²(b) per
            layer (a network against the same architecture untrained: what training put
            there), around a zero line.
    """
    titles = ["class-specificity ω² (0: chance)", "saturation of the gates"]
    if difference is not None:
        missing = [name for name in difference if name not in curves]
        if missing:
            raise ValueError(f"difference names curves {missing} that are not drawn; drawn: {list(curves)}")
        titles.append(f"ω²({difference[0]}) − ω²({difference[1]})")
    fig = make_subplots(
        rows=len(titles),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12 if len(titles) == 2 else 0.08,
        subplot_titles=titles,
    )
    for i, (name, stats) in enumerate(curves.items()):
        frame = stats.specificity_frame()
        colour = _colour(i)
        band = (nulls or {}).get(name, {})
        if band:
            layers = [layer for layer in frame["layer"] if layer in band]
            ends = [band[k] for k in layers] + [band[k] for k in layers[::-1]]
            fig.add_trace(
                go.Scatter(
                    x=[*layers, *layers[::-1]],
                    y=[band[k].high for k in layers] + [band[k].low for k in layers[::-1]],
                    fill="toself",
                    fillcolor=_rgba(colour, 0.15),
                    line=dict(width=0),
                    mode="lines",
                    name=f"{name}: chance (95 % of label permutations)",
                    customdata=[_band_note(b) for b in ends],
                    hovertemplate="%{x}: chance band %{y:.4f}<br>%{customdata}<extra>" + name + "</extra>",
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
        if frame["share_high"].isna().all():
            continue  # no values counted (a saved SGE run): no empty lines in the legend
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
    if not any(t.yaxis == "y2" for t in fig.data):
        fig.add_annotation(
            text="not counted: these statistics hold no gate values",
            xref="x2 domain",
            yref="y2 domain",
            x=0.5,
            y=0.5,
            showarrow=False,
            font=dict(color="#7f7f7f"),
        )
    if difference is not None:
        _difference_row(fig, curves, difference)
    fig.update_layout(
        title=f"Class-specificity and saturation of {prefix} layers against depth",
        height=560 if difference is None else 760,
        **_LAYOUT,
    )
    fig.update_xaxes(title_text=f"{prefix} layer (shallow → deep)", row=len(titles), col=1)
    fig.update_yaxes(title_text="ω²", row=1, col=1)
    fig.update_yaxes(title_text="share / distance", range=[0, 1], row=2, col=1)
    return fig


def _difference_row(fig: go.Figure, curves: Mapping[str, ClassStats], difference: tuple[str, str]) -> None:
    """The third panel of :func:`specificity_curve`: ω²(a) − ω²(b) over their shared layers."""
    a, b = (curves[name] for name in difference)
    layers = [layer for layer in a.layers if layer in b.layers]
    values = [a.specificity(layer) - b.specificity(layer) for layer in layers]
    fig.add_trace(
        go.Scatter(
            x=layers,
            y=values,
            mode="lines+markers",
            name=f"ω²({difference[0]}) − ω²({difference[1]})",
            line=dict(color="#333333"),
            hovertemplate="%{x}: difference %{y:.3f}<extra></extra>",
        ),
        row=3,
        col=1,
    )
    fig.add_hline(y=0, line=dict(color="#999999", width=1), row=3, col=1)
    fig.update_yaxes(title_text="difference", row=3, col=1)


def specificity_comparison(curves: Mapping[str, ClassStats]) -> pd.DataFrame:
    """Each curve's :meth:`ClassStats.specificity_frame`, one after the other, with a
    ``curve`` column (the legend name): the table behind a several-curve depth figure."""
    frames = [stats.specificity_frame().assign(curve=name) for name, stats in curves.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    channels, with the mean of the class means dotted in every panel.

    ``channels``: the channels in plotting order (default 50 uniformly spaced); increasing
    indices are plotted at their index, any other order (a sort) at their rank. Each line's
    ``customdata`` holds its channel indices and ``meta`` its layer (a click opens one)."""
    shown = list(classes)[:4]
    n = len(stats.mean(layer))
    picked = sample_channels(n, 50) if channels is None else np.asarray(channels)
    by_index = bool(np.all(np.diff(picked) > 0))
    x = picked if by_index else np.arange(len(picked))
    fig = make_subplots(rows=1, cols=len(shown), shared_yaxes=True, subplot_titles=[short_label(c) for c in shown])
    reference = stats.mean_of_class_means(layer)[picked]
    for k, cls in enumerate(shown, start=1):
        mean, std = stats.mean(layer, cls)[picked], stats.std(layer, cls)[picked]
        colour = _colour(k - 1)
        if np.isfinite(std).all():
            fig.add_trace(_band(x, mean, std, colour, 0.2), row=1, col=k)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers",
                name=f"{short_label(cls)} (n={stats.count(cls)})",
                customdata=picked,
                meta=layer,
                marker=dict(size=4 if len(x) <= 64 else 2),
                line=dict(color=colour, width=1.5),
                hovertemplate=f"{short_label(cls)}<br>channel %{{customdata}}: %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=k,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
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
        fig.update_xaxes(title_text="channel index" if by_index else "channel (in the chosen order)", row=1, col=k)
    fig.update_layout(
        **_LAYOUT, title=f"{layer}: mean excitation ± one std across images (the paper's Figure 7)", height=420
    )
    return fig


def checkpoint_difference(
    first: ClassStats,
    second: ClassStats,
    layer: str,
    classes: Sequence[str],
    names: tuple[str, str] = ("A", "B"),
) -> go.Figure:
    """Two checkpoints of one network on the same images: mean(A) − mean(B) of every
    position of ``layer``, one line per class shown and all images dotted, around a zero
    line; each point's ``customdata`` is its position and ``meta`` the layer (a click opens it).

    Raises:
        ValueError: the layer differs in size between the two (not one network).
    """
    size = len(first.mean(layer))
    if len(second.mean(layer)) != size:
        raise ValueError(f"{layer} has {size} positions in {names[0]} and {len(second.mean(layer))} in {names[1]}")
    x = np.arange(size)
    a, b = (short_label(n, 24) for n in names)
    fig = go.Figure()
    fig.add_hline(y=0, line=dict(color="#7f7f7f", width=1))
    shown: list[ClassKey] = [c for c in classes if c in first.classes and c in second.classes]
    for i, cls in enumerate([*shown, ALL]):
        gap = first.mean(layer, cls) - second.mean(layer, cls)
        fig.add_trace(
            _class_line(
                cls,
                i,
                gap,
                f"{layer} {first.index_name}",
                name=f"{short_label(str(cls))} (n={first.count(cls)})",
                customdata=x,
                meta=layer,
                marker=dict(size=4 if size <= 64 else 2),
                hovertemplate=f"{cls}<br>{layer} {first.index_name} %{{x}}: {a} − {b} %{{y:+.4f}}<extra></extra>",
            )
        )
    bound = max((float(np.nanmax(np.abs(t.y))) for t in fig.data if len(t.y)), default=0.0)
    fig.update_layout(
        **_LAYOUT,
        title=f"{layer}: mean({a}) − mean({b}) per {first.index_name}, the same images through both",
        xaxis_title=f"{first.index_name} index",
        yaxis=dict(title="difference of means", range=[-1.05 * bound or -1, 1.05 * bound or 1]),
        height=420,
    )
    return fig


def reference_difference(curves: Mapping[str, ClassStats], reference: str, layer: str) -> go.Figure:
    """Several checkpoints of one network on the same images: mean(checkpoint) − mean(reference)
    over all images of every position of ``layer``, one line per checkpoint, around a zero
    line; each point's ``customdata`` is its position and ``meta`` the layer.

    Raises:
        ValueError: ``reference`` is not a curve, or a checkpoint's layer has another size.
    """
    if reference not in curves:
        raise ValueError(f"reference {reference!r} is not one of {list(curves)}")
    base = curves[reference].mean(layer)
    fig = go.Figure()
    fig.add_hline(y=0, line=dict(color="#7f7f7f", width=1))
    others = [name for name in curves if name != reference]
    for i, name in enumerate(others):
        values = curves[name].mean(layer)
        if len(values) != len(base):
            raise ValueError(f"{layer} has {len(values)} positions in {name} and {len(base)} in {reference}")
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(base)),
                y=values - base,
                mode="lines+markers",
                name=short_label(name, 40),
                customdata=np.arange(len(base)),
                meta=layer,
                marker=dict(size=4 if len(base) <= 64 else 2),
                line=dict(color=_colour(i), width=1.5),
                hovertemplate=f"{name}<br>{layer} %{{x}}: %{{y:+.4f}}<extra></extra>",
            )
        )
    index = curves[reference].index_name
    fig.update_layout(
        **_LAYOUT,
        title=f"{layer}: each checkpoint's mean − {short_label(reference, 40)}'s per {index}, all images",
        xaxis_title=f"{index} index",
        yaxis_title="difference of means",
        height=420,
    )
    return fig
