"""Several attention modules on one chart: the same images through SE, SGE, ECA, SK,
ResNeSt, CBAM, BAM ... networks, each module's class-specificity and saturation against its
place in the network."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..attention.layers import depth_positions
from ..stats.classes import ClassStats
from ..stats.measures import NullBand
from ._style import _LAYOUT, _colour, _rgba

__all__ = ["module_depth_curves"]


def module_depth_curves(
    curves: Mapping[str, ClassStats], nulls: Mapping[str, Mapping[str, NullBand]] | None = None
) -> go.Figure:
    """One line per module: class-specificity ω² of each of its layers (with its chance band
    where ``nulls`` gives it) above, the share of its gate values at or above 0.99 below,
    against the layer's place in the network (:func:`sevis.depth_positions`: 1.0 is the end
    of the paper's stage 2, 4.0 of stage 5), so networks of one design share the axis.

    Args:
        curves: legend name (a module, ``"CBAM-ResNet-50 CBAMS"``) -> its statistics (of one
            kind; several kinds of one network are several curves).
        nulls: legend name -> layer -> chance band.
    """
    if not curves:
        raise ValueError("curves must hold at least one module's statistics")
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=["class-specificity ω² (0: chance)", "share of gate values ≥ 0.99"],
    )
    for i, (name, stats) in enumerate(curves.items()):
        frame = stats.specificity_frame()
        place = depth_positions(list(frame["layer"]))
        x = np.array([place[layer] for layer in frame["layer"]])
        colour = _colour(i)
        band = (nulls or {}).get(name, {})
        layers = [layer for layer in frame["layer"] if layer in band]
        if layers:
            xs = [place[layer] for layer in layers]
            fig.add_trace(
                go.Scatter(
                    x=[*xs, *xs[::-1]],
                    y=[band[k].high for k in layers] + [band[k].low for k in layers[::-1]],
                    fill="toself",
                    fillcolor=_rgba(colour, 0.15),
                    line=dict(width=0),
                    mode="lines",
                    name=f"{name}: chance",
                    legendgroup=name,
                    hoverinfo="skip",
                ),
                row=1,
                col=1,
            )
        for row, column in ((1, "specificity"), (2, "share_high")):
            if row == 2 and frame[column].isna().all():
                continue  # a saved run of a spatial kind keeps no gate values
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=frame[column],
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    customdata=frame["layer"],
                    line=dict(color=colour),
                    hovertemplate=f"%{{customdata}}: %{{y:.3f}}<extra>{name}</extra>",
                ),
                row=row,
                col=1,
            )
    fig.update_layout(title="Class-specificity and saturation of each module against depth", height=620, **_LAYOUT)
    fig.update_xaxes(
        title_text="place in the network (the paper's stages)",
        tickvals=[1, 2, 3, 4],
        ticktext=["end of stage 2", "end of stage 3", "end of stage 4", "end of stage 5"],
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="ω²", row=1, col=1)
    fig.update_yaxes(title_text="share", range=[0, 1], row=2, col=1)
    return fig
