"""SGE's figures: each group's mask statistics per class and its feature maps before and
after SGE (arXiv:1905.09646)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..stats._accumulators import BIN_EDGES
from ..stats.classes import ALL, ClassKey, ClassStats
from ..stats.sge import MaskStats

if TYPE_CHECKING:
    pass
from ._style import _ALL_COLOUR, _LAYOUT, _band, _class_line, _colour, short_label

__all__ = ["group_activation_spread", "group_distributions", "group_feature_maps", "mask_class_stats"]


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
        before: (G, H, W) feature norms of one image before SGE (see
            :meth:`sevis.attention.kinds.SGEKind.module_values`).
        after: the same after SGE.
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


def mask_class_stats(
    stats: MaskStats, layer: str, classes: Sequence[str], *, band: bool = False, what: str = "SGE mask"
) -> go.Figure:
    """Per group (or map, or channel: the statistics' ``index_name``): mean mask value and
    spatial variance, one line per class; with ``band``, the mean mask value ± one standard
    deviation across the class's images (as the SE profiles' Figure 7 band). ``what`` names
    the maps in the title (CBAM's spatial gates, BAM's gates)."""
    index = stats.index_name
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=["mean mask value", "spatial variance of the mask"]
    )
    keys: list[ClassKey] = [*classes, ALL]
    for i, cls in enumerate(keys):
        if band and cls is not ALL and stats.count(cls) > 1:
            mean, std = stats.group_mean(layer, cls), stats.std(layer, cls, "mean")
            fig.add_trace(_band(np.arange(len(mean)), mean, std, _colour(i), 0.15, repr(cls)), row=1, col=1)
        for row, values in ((1, stats.group_mean(layer, cls)), (2, stats.group_variance(layer, cls))):
            trace = _class_line(cls, i, values, index, legendgroup=repr(cls), showlegend=row == 1)
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(title=f"{layer}: {what} statistics per class", height=520, **_LAYOUT)
    fig.update_xaxes(title_text=index, row=2, col=1)
    fig.update_yaxes(title_text="mean σ(a)" if what == "SGE mask" else "mean gate", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="variance", rangemode="tozero", row=2, col=1)
    return fig


def group_distributions(
    stats: ClassStats, layer: str, groups: Sequence[int] | None = None, cls: ClassKey = ALL, n: int = 3
) -> go.Figure:
    """The SGE paper's distributions of group activations before and after SGE: over the
    images (of ``cls``) and positions, the share of feature norms in each of 50 bins of
    [0, 1] (each image's norms over that group's largest before SGE), before (grey) and
    after; all groups pooled, then ``groups`` (default the ``n`` whose distributions SGE
    changes most: the largest total variation distance). SGE keeping large activations and
    pushing small ones towards 0 moves weight to the left bins.

    Raises:
        ValueError: the statistics hold no distributions for ``layer`` (a saved run keeps
            per-image summaries only).
    """
    if sorted(stats.distributions(layer)) != ["after", "before"]:
        raise ValueError(f"no distributions before and after SGE for {layer}: they need the masks of the images")
    count = len(stats.mean(layer))

    def shares(when: str, group: int | None) -> np.ndarray:
        counts = stats.distribution(layer, when, cls, group).astype(np.float64)
        return counts / counts.sum() if counts.sum() else counts

    if groups is None:
        distance = [np.abs(shares("after", g) - shares("before", g)).sum() / 2 for g in range(count)]
        groups = [int(g) for g in np.argsort(distance, kind="stable")[::-1][:n]]
    panels: list[int | None] = [None, *groups]
    titles = ["all groups", *(f"group {g}" for g in groups)]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=titles)
    centres = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2
    for column, group in enumerate(panels, start=1):
        for when, colour in (("before", "#9a9a9a"), ("after", _colour(0))):
            fig.add_trace(
                go.Scatter(
                    x=centres,
                    y=shares(when, group),
                    mode="lines",
                    line=dict(shape="hvh", color=colour),
                    name=f"{when} SGE",
                    legendgroup=when,
                    showlegend=column == 1,
                    hovertemplate=f"{when} SGE<br>%{{x:.2f}}: %{{y:.3f}} of the positions<extra></extra>",
                ),
                row=1,
                col=column,
            )
        fig.update_xaxes(title_text="feature norm / the image's largest before", range=[0, 1], row=1, col=column)
    who = "all images" if cls is ALL else short_label(str(cls))
    fig.update_layout(
        title=f"{layer}: distribution of group activations before and after SGE ({who})", height=380, **_LAYOUT
    )
    fig.update_yaxes(title_text="share of positions", row=1, col=1)
    return fig
