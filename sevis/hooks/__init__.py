"""Hooks on a model's attention layers: capturing values, the forward step, knock-outs and Grad-CAM."""

from .capturing import Capture, HookSet, capture
from .forward import TOP_K, BatchResult, forward_batch
from .gradcam import grad_cam
from .knockouts import (
    Channels,
    Fixed,
    GroupMean,
    Knockout,
    MeanOf,
    Remove,
    Replacement,
    knockout,
    knockout_effect,
    knockout_effects,
)

__all__ = [
    "TOP_K",
    "BatchResult",
    "Capture",
    "Channels",
    "Fixed",
    "GroupMean",
    "HookSet",
    "Knockout",
    "MeanOf",
    "Remove",
    "Replacement",
    "capture",
    "forward_batch",
    "grad_cam",
    "knockout",
    "knockout_effect",
    "knockout_effects",
]
