"""Which figures each kind of attention draws: a registry from a kind's name to a drawing.

Kinds (:mod:`sevis.attention.kinds`) say what an attention value *is*; how it is drawn
lives here, so the lowest layer never imports the figures. SE, SGE and branch gates
register their drawings below; any other kind draws each of its summary fields' class means until it
registers one of its own with :func:`register_kind_figures`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import plotly.graph_objects as go

from ..attention.kinds import AttentionKind, get_kind
from ..stats.classes import ClassStats
from ..stats.se import ExcitationStats
from ..stats.sge import MaskStats
from .branch import branch_profiles
from .classes import class_histograms, class_profiles, field_profiles, sample_channels
from .sge import group_activation_spread, group_distributions, mask_class_stats

__all__ = ["KindFigures", "kind_figures", "register_kind_figures", "unregister_kind_figures"]

KindFigures = Callable[[ClassStats, str, Sequence[str]], list[go.Figure]]
"""A drawing: (a kind's statistics, a layer, classes) -> that layer's default figures."""

_DRAWINGS: dict[str, KindFigures] = {}


def register_kind_figures(kind: str, draw: KindFigures) -> None:
    """Draw layers of the registered kind called ``kind`` with ``draw``.

    Raises:
        ValueError: no kind of that name is registered.
        TypeError: ``draw`` is not callable.
    """
    get_kind(kind)  # raises ValueError naming the registered kinds
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}")
    _DRAWINGS[kind] = draw


def unregister_kind_figures(kind: str) -> None:
    """Go back to the default drawing for ``kind`` (tests, plugins being reloaded)."""
    _DRAWINGS.pop(kind, None)


def kind_figures(kind: str | AttentionKind, stats: ClassStats, layer: str, classes: Sequence[str]) -> list[go.Figure]:
    """The default figures of one layer for ``classes``, as the layer's kind draws them.

    Args:
        kind: a registered kind or its name.
        stats: that kind's per-class statistics (from an analysis or a saved run).
        layer: a layer of ``stats``.
        classes: the classes to draw, each a class of ``stats``.
    """
    spec = get_kind(kind) if isinstance(kind, str) else kind
    draw = _DRAWINGS.get(spec.name)
    if draw is None:
        return [field_profiles(stats, layer, classes, name) for name in spec.fields]
    return draw(stats, layer, classes)


def _se_figures(stats: ClassStats, layer: str, classes: Sequence[str]) -> list[go.Figure]:
    """The SENet paper's Figure 6 (50 uniformly sampled channels, with the ±std band)
    and the per-class histograms of the layer's excitations."""
    if not isinstance(stats, ExcitationStats):
        raise TypeError(f"SE layers are drawn from ExcitationStats, got {type(stats).__name__}")
    channels = sample_channels(len(stats.mean(layer)), 50)
    return [
        class_profiles(stats, layer, classes, channels=channels, band=True),
        class_histograms(stats, layer, classes),
    ]


def _sge_figures(stats: ClassStats, layer: str, classes: Sequence[str]) -> list[go.Figure]:
    """Each group's mask statistics per class, and the spread and the distributions of the
    group activations before and after SGE where the statistics hold them (the
    distributions: over all images)."""
    if not isinstance(stats, MaskStats):
        raise TypeError(f"SGE layers are drawn from MaskStats, got {type(stats).__name__}")
    shown = [mask_class_stats(stats, layer, classes)]
    if stats.has_field(layer, "norm_var_after"):
        shown.append(group_activation_spread(stats, layer, classes))
    if stats.distributions(layer):
        shown.append(group_distributions(stats, layer))
    return shown


def _branch_figures(stats: ClassStats, layer: str, classes: Sequence[str]) -> list[go.Figure]:
    """Each branch's mean weight per class over 50 uniformly sampled channels, and the
    per-class histograms of each channel's largest branch weight (1: one branch takes all)."""
    channels = sample_channels(len(stats.mean(layer, field="dominant")), 50)
    return [
        branch_profiles(stats, layer, classes, channels=channels),
        class_histograms(stats, layer, classes, value="largest branch weight"),
    ]


def _spatial_figures(stats: ClassStats, layer: str, classes: Sequence[str], *, what: str) -> list[go.Figure]:
    """Each map's (CBAM: the one map's; BAM: each channel's) mean gate and spatial variance
    per class, and the per-class histograms of every gate value."""
    if not isinstance(stats, MaskStats):
        raise TypeError(f"spatial gates are drawn from MaskStats, got {type(stats).__name__}")
    return [
        mask_class_stats(stats, layer, classes, what=what),
        class_histograms(stats, layer, classes, value=what),
    ]


def _context_figures(stats: ClassStats, layer: str, classes: Sequence[str]) -> list[go.Figure]:
    """GC's context weights: their entropy and peak per class, and the per-class histograms
    of each weight over its image's largest."""
    return [
        field_profiles(stats, layer, classes, "entropy"),
        field_profiles(stats, layer, classes, "peak"),
        class_histograms(stats, layer, classes, value="context weight over the image's peak"),
    ]


register_kind_figures("se", _se_figures)
register_kind_figures("sge", _sge_figures)
register_kind_figures("branch", _branch_figures)
register_kind_figures("spatial", partial(_spatial_figures, what="spatial gate"))
register_kind_figures("bam", partial(_spatial_figures, what="BAM gate"))
register_kind_figures("context", _context_figures)
