"""Analyses of images in memory and of saved runs: per image, per class, per channel."""

from .explore import ChannelView, ExcitationMap, channel_view, excitation_map, run_image
from .images import TOP_K, Analysis, Failure, ImageResult, analyse

__all__ = [
    "TOP_K",
    "Analysis",
    "ChannelView",
    "ExcitationMap",
    "Failure",
    "ImageResult",
    "analyse",
    "channel_view",
    "excitation_map",
    "run_image",
]
