"""Analyses of images in memory and of saved runs: per image, per class, per channel."""

from .explore import ChannelView, ExcitationMap, channel_view, excitation_map, run_image
from .images import TOP_K, Analysis, Failure, ImageResult, analyse
from .modules import HasStats, HasTable, compare_ablations, module_curves

__all__ = [
    "TOP_K",
    "Analysis",
    "ChannelView",
    "ExcitationMap",
    "Failure",
    "HasStats",
    "HasTable",
    "ImageResult",
    "analyse",
    "channel_view",
    "compare_ablations",
    "excitation_map",
    "module_curves",
    "run_image",
]
