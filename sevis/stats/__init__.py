"""Per-class statistics of attention values, accumulated batch by batch, and the measures sevis adds to the papers."""

from ._accumulators import BIN_EDGES, FINE_BINS
from .by_kind import StatsByKind
from .classes import ALL, ClassKey, ClassStats, count_distribution
from .contrast import FDR, benjamini_hochberg, two_class_test
from .measures import (
    PERMUTATIONS,
    SATURATED_HIGH,
    SATURATED_LOW,
    NullBand,
    band_ranks,
    kept_positions,
    omega_squared,
    saturation,
    specificity_null,
    specificity_nulls,
)
from .se import ExcitationStats, predicted_labels
from .sge import MaskStats, mask_overview, mask_summary, mean_mask, top_groups

__all__ = [
    "ALL",
    "BIN_EDGES",
    "FDR",
    "FINE_BINS",
    "PERMUTATIONS",
    "SATURATED_HIGH",
    "SATURATED_LOW",
    "ClassKey",
    "ClassStats",
    "ExcitationStats",
    "MaskStats",
    "NullBand",
    "StatsByKind",
    "band_ranks",
    "benjamini_hochberg",
    "count_distribution",
    "kept_positions",
    "mask_overview",
    "mask_summary",
    "mean_mask",
    "omega_squared",
    "predicted_labels",
    "saturation",
    "specificity_null",
    "specificity_nulls",
    "top_groups",
    "two_class_test",
]
