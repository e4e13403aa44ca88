"""Per-class statistics of attention values, accumulated batch by batch, and the measures sevis adds to the papers."""

from ._accumulators import BIN_EDGES
from .by_kind import StatsByKind
from .classes import ALL, ClassKey, ClassStats
from .measures import (
    SATURATED_HIGH,
    SATURATED_LOW,
    NullBand,
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
    "SATURATED_HIGH",
    "SATURATED_LOW",
    "ClassKey",
    "ClassStats",
    "ExcitationStats",
    "MaskStats",
    "NullBand",
    "StatsByKind",
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
]
