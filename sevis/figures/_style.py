"""What every figure shares: colours, the layout, labels, the untrained mark, bands and class lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from ..stats.classes import ALL, ClassKey

if TYPE_CHECKING:
    pass

__all__ = ["UNTRAINED_NOTE", "mark_untrained", "short_label"]


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
    it can be mistaken for the real model's; a figure stamped already is left as it is."""
    title = fig.layout.title.text or ""
    if UNTRAINED_NOTE in title:
        return fig
    fig.update_layout(
        title_text=f"{title}<br><span style='font-size:13px;color:#b00020'>{UNTRAINED_NOTE}</span>",
        margin_t=max(fig.layout.margin.t or 0, 85),
    )
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
