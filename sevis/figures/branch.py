"""Figures of branch gates (SK's kernel branches, arXiv:1903.06586; ResNeSt's radix splits,
arXiv:2004.08955): each channel's softmax over its M branches, per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..stats.classes import ALL, ClassKey, ClassStats
from ._style import _ALL_COLOUR, _LAYOUT, _colour, short_label

__all__ = ["branch_count", "branch_profiles"]


def branch_count(stats: ClassStats, layer: str) -> int:
    """M, the branches per channel of a branch-gate layer's statistics: the ``weight``
    summary holds C * M values, ``dominant`` C."""
    weights, dominant = len(stats.mean(layer, field="weight")), len(stats.mean(layer, field="dominant"))
    if dominant == 0 or weights % dominant:
        raise ValueError(f"{layer}: {weights} branch weights do not split over {dominant} channels")
    return weights // dominant


def branch_profiles(
    stats: ClassStats, layer: str, classes: Sequence[str], *, channels: np.ndarray | None = None
) -> go.Figure:
    """Each channel's mean weight of each branch, one line per class and one for all images,
    a panel per branch (branch 1 on top); with two branches the panels mirror each other
    (the weights of a channel sum to 1).

    Args:
        stats: statistics of a ``"branch"`` kind layer (summaries ``weight`` and ``dominant``).
        channels: channel indices to plot, increasing (default: all).
    """
    m = branch_count(stats, layer)
    n = len(stats.mean(layer, field="dominant"))
    channels = np.arange(n) if channels is None else np.asarray(channels)
    fig = make_subplots(
        rows=m, cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=[f"branch {b + 1}" for b in range(m)]
    )
    lines: list[tuple[str, ClassKey, str, float]] = [
        (short_label(cls), cls, _colour(i), 1.5) for i, cls in enumerate(classes)
    ]
    lines.append((f"{ALL} (n={stats.count(ALL)})", ALL, _ALL_COLOUR, 2.0))
    for label, cls, colour, width in lines:
        weights = stats.mean(layer, cls, "weight").reshape(n, m)
        for b in range(m):
            fig.add_trace(
                go.Scatter(
                    x=channels,
                    y=weights[channels, b],
                    mode="lines+markers",  # markers: a line alone cannot be clicked
                    name=label,
                    legendgroup=label,
                    showlegend=b == 0,
                    customdata=channels,
                    marker=dict(size=4 if len(channels) <= 64 else 2),
                    line=dict(color=colour, width=width, dash="dashdot" if cls is ALL else None),
                    hovertemplate=f"{label}<br>channel %{{customdata}}, branch {b + 1}: %{{y:.3f}}<extra></extra>",
                ),
                row=b + 1,
                col=1,
            )
    fig.update_layout(title=f"{layer}: mean weight of each branch per class", height=220 + 160 * m, **_LAYOUT)
    fig.update_yaxes(title_text="mean weight", range=[0, 1])
    fig.update_xaxes(title_text="channel index", row=m, col=1)
    return fig
