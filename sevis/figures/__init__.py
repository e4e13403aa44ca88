"""Plotly figures of attention, arrays and statistics in and ``go.Figure`` out, and the figures each kind draws."""

# NOTE sevis.figures.upsample was public before the subpackages: the overlays use it.
from ..attention.geometry import upsample
from ._style import UNTRAINED_NOTE, mark_untrained, short_label
from .ablation import ablation_chart, ablation_comparison
from .branch import branch_count, branch_profiles
from .channels import channel_by_class, excitation_map_figure, importance_scatter, volcano
from .classes import (
    REFERENCES,
    checkpoint_difference,
    class_band_panels,
    class_histograms,
    class_profiles,
    class_profiles_grid,
    field_profiles,
    reference_difference,
    sample_channels,
    selectivity_distribution,
    sort_by_difference,
    specificity_comparison,
    specificity_curve,
)
from .images import excitation_overview, excitation_profiles, heat_overlay, mask_grid, top_classes
from .modules import module_depth_curves
from .registry import KindFigures, kind_figures, register_kind_figures, unregister_kind_figures
from .sge import group_activation_spread, group_distributions, group_feature_maps, mask_class_stats

__all__ = [
    "REFERENCES",
    "UNTRAINED_NOTE",
    "KindFigures",
    "ablation_chart",
    "ablation_comparison",
    "branch_count",
    "branch_profiles",
    "channel_by_class",
    "checkpoint_difference",
    "class_band_panels",
    "class_histograms",
    "class_profiles",
    "class_profiles_grid",
    "excitation_map_figure",
    "excitation_overview",
    "excitation_profiles",
    "field_profiles",
    "group_activation_spread",
    "group_distributions",
    "group_feature_maps",
    "heat_overlay",
    "importance_scatter",
    "kind_figures",
    "mark_untrained",
    "mask_class_stats",
    "mask_grid",
    "module_depth_curves",
    "reference_difference",
    "register_kind_figures",
    "sample_channels",
    "selectivity_distribution",
    "short_label",
    "sort_by_difference",
    "specificity_comparison",
    "specificity_curve",
    "top_classes",
    "unregister_kind_figures",
    "upsample",
    "volcano",
]
