"""The ablation chart: accuracy with each stage's attention removed."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ._style import _LAYOUT, _colour

__all__ = ["ablation_chart", "ablation_comparison"]


def ablation_chart(table: pd.DataFrame) -> go.Figure:
    """Top-1 and top-5 accuracy per knock-out condition (the SENet paper's Table 13 as bars),
    the change against nothing removed in the hover, and ``top1_kept``: the share of all
    images whose top-1 class stays the unmodified network's. When no image's label is a
    class of the model, accuracy is undefined and only that agreement is drawn."""
    labelled = int(table["images"].iloc[0])
    fig = go.Figure()
    for i, metric in enumerate(("top1", "top5")):
        if metric not in table or labelled == 0:
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
    if "top1_kept" in table:
        fig.add_trace(
            go.Bar(
                x=table.condition,
                y=table.top1_kept,
                name="top-1 kept (agrees with nothing removed)",
                marker_color=_colour(2),
                hovertemplate="%{x}: top-1 unchanged for %{y:.2%} of all images<extra>top1_kept</extra>",
            )
        )
    about = (
        f"{labelled:,} labelled images"
        if labelled
        else "no label is a class of the model: agreement with the unmodified network"
    )
    fig.update_layout(
        **_LAYOUT,
        title=f"Accuracy with attention removed ({about})",
        yaxis=dict(title="share of images", tickformat=".0%", range=[0, 1]),
        barmode="group",
        height=420,
    )
    return fig


def ablation_comparison(table: pd.DataFrame) -> go.Figure:
    """Several networks' ablations side by side (:func:`sevis.compare_ablations`'s table): per
    condition, one bar per network, top-1 accuracy where labels name classes of the models,
    otherwise the share of images whose top-1 stays the unmodified network's (``top1_kept``)."""
    labelled = int(table["images"].iloc[0]) > 0
    metric = "top1" if labelled else "top1_kept"
    fig = go.Figure()
    for i, (network, rows) in enumerate(table.groupby("network", sort=False)):
        fig.add_trace(
            go.Bar(
                x=rows.condition,
                y=rows[metric],
                name=str(network),
                marker_color=_colour(i),
                customdata=rows["top1_change"] if labelled else rows["layers"],
                hovertemplate=(
                    "%{x}: %{y:.2%} (%{customdata:+.2%})" if labelled else "%{x}: %{y:.2%} kept (%{customdata} layers)"
                )
                + f"<extra>{network}</extra>",
            )
        )
    what = "top-1 accuracy" if labelled else "top-1 kept (agrees with nothing removed; no label is a class)"
    fig.update_layout(
        **_LAYOUT,
        title=f"Each stage's attention removed, every network: {what}",
        yaxis=dict(title="share of images", tickformat=".0%", range=[0, 1]),
        barmode="group",
        height=420,
    )
    return fig
