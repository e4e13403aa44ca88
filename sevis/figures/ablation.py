"""The ablation chart: accuracy with each stage's attention removed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    pass
from ._style import _LAYOUT, _colour

__all__ = ["ablation_chart"]


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
