"""Figures of one channel across a run, of a layer's excitation map (PCA of the images' vectors),
of the channels that separate two classes, and of what knocking each channel out costs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from ..analysis.explore import ChannelView, ExcitationMap
from ._style import _LAYOUT, _colour, short_label

__all__ = ["channel_by_class", "excitation_map_figure", "importance_scatter", "volcano"]


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
    others grey), class centroids as crosses; hover names the image, and each image's point
    carries its name as ``customdata`` (a lasso selects images). SVG, not WebGL: at most
    5,000 points are drawn, and a selection needs no GPU."""
    points = emap.points
    counts = points.label.value_counts()
    shown = list(counts.index[:max_classes])
    fig = go.Figure()
    others = points[~points.label.isin(shown)]
    if len(others):
        fig.add_trace(
            go.Scatter(
                x=others.x,
                y=others.y,
                mode="markers",
                name=f"{others.label.nunique()} other classes",
                marker=dict(color="#bbbbbb", size=4),
                customdata=others.image.tolist(),
                text=others.label + "<br>" + others.image,
                hovertemplate="%{text}<extra></extra>",
            )
        )
    for i, cls in enumerate(shown):
        rows = points[points.label == cls]
        fig.add_trace(
            go.Scatter(
                x=rows.x,
                y=rows.y,
                mode="markers",
                name=short_label(cls, 24),
                marker=dict(color=_colour(i), size=6),
                customdata=rows.image.tolist(),
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


def volcano(table: pd.DataFrame, top: int = 10) -> go.Figure:
    """A two-class test (:func:`sevis.stats.two_class_test`) as a volcano plot: each
    position's difference of the class means (x) against -log10 p (y), the positions
    significant at the table's false discovery rate in colour, the ``top`` most
    separating labelled; every point carries its position as customdata (a click opens it)."""
    index = next(c for c in table.columns if c not in _TEST_COLUMNS)
    a, b, fdr = table.attrs.get("a", "A"), table.attrs.get("b", "B"), table.attrs.get("fdr", 0.05)
    layer = str(table["layer"].iloc[0]) if len(table) else ""
    defined = table[table.p.notna()]
    y = -np.log10(np.maximum(defined.p.to_numpy(np.float64), 1e-300))
    fig = go.Figure()
    for significant, colour, label in ((False, "#b0b0b0", "not significant"), (True, _colour(3), f"q ≤ {fdr:g}")):
        keep = (defined.significant == significant).to_numpy()
        rows = defined[keep]
        fig.add_trace(
            go.Scatter(  # SVG, not WebGL: 2,048 points draw fast, and a click needs no GPU
                x=rows.difference,
                y=y[keep],
                mode="markers",
                name=f"{label} ({int(keep.sum()):,})",
                marker=dict(color=colour, size=6),
                customdata=rows[index].tolist(),
                text=[
                    f"{index} {int(i)}: {short_label(a)} {ma:.3f}, {short_label(b)} {mb:.3f}, q {q:.2g}, g {g:.2f}"
                    for i, ma, mb, q, g in zip(rows[index], rows.mean_a, rows.mean_b, rows.q, rows.effect, strict=True)
                ],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    best = defined.head(top)
    fig.add_trace(
        go.Scatter(
            x=best.difference,
            y=y[: len(best)],
            mode="text",
            text=[str(int(i)) for i in best[index]],
            textposition="top center",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    count = f"{table.attrs['count_a']:,} vs {table.attrs['count_b']:,} images" if "count_a" in table.attrs else ""
    fig.update_layout(
        **_LAYOUT,
        title=(
            f"{layer}: which {index}s separate {short_label(a)} from {short_label(b)} "
            f"(Welch's t, Benjamini-Hochberg FDR {fdr:g}; {count})"
        ),
        xaxis_title=f"mean({short_label(a, 20)}) − mean({short_label(b, 20)})",
        yaxis_title="−log₁₀ p",
        height=440,
    )
    return fig


def importance_scatter(
    table: pd.DataFrame, layer: str, *, measure: str = "p_true_change", correlation: Mapping[str, float] | None = None
) -> go.Figure:
    """What knocking out each channel costs (:func:`sevis.channel_importance`'s table)
    against its class selectivity, a point per channel (Morcos et al. 2018's question: does
    selectivity predict importance?). ``measure``: the table's change column drawn as a
    drop (``p_true_change``, ``top1_change`` or ``p_top1_change``); ``correlation``:
    Spearman's rho, p and channels, for the title. Points carry their channel as customdata
    (a click opens it)."""
    index = str(table.columns[0])
    drop = -table[measure].to_numpy(np.float64)
    what = {
        "p_true_change": "drop in the true class's probability",
        "top1_change": "drop in top-1 accuracy",
        "p_top1_change": "drop in the probability of the network's own top-1",
    }.get(measure, measure)
    fig = go.Figure(
        go.Scatter(  # SVG: 2,048 points draw fast, and a click needs no GPU
            x=table.selectivity,
            y=drop,
            mode="markers",
            marker=dict(color=_colour(0), size=6, opacity=0.75),
            customdata=table[index].tolist(),
            meta=layer,
            text=[
                f"{index} {int(c)}: selectivity {s:.3f}, {what} {d:+.4f}, top-1 kept {k:.1%}"
                for c, s, d, k in zip(table[index], table.selectivity, drop, table.top1_kept, strict=True)
            ],
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    rho = ""
    if correlation is not None and np.isfinite(correlation.get("rho", np.nan)):
        count = int(correlation["channels"])
        rho = f" · Spearman ρ {correlation['rho']:.2f} (p {correlation['p']:.2g}, {count:,} {index}s)"
    fig.update_layout(
        **_LAYOUT,
        title=f"{layer}: each {index} knocked out — cost against class selectivity{rho}",
        xaxis_title="class selectivity index (Morcos et al. 2018)",
        yaxis_title=what,
        height=440,
    )
    return fig


_TEST_COLUMNS = {
    *("layer", "mean_a", "mean_b", "difference", "std_a", "std_b"),
    *("t", "df", "p", "q", "effect", "significant"),
}
