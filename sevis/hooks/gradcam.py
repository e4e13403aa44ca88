"""Grad-CAM (Selvaraju et al., arXiv:1610.02391) through captum's ``LayerGradCam``.

Shown beside the SGE masks for contrast: Grad-CAM says where the evidence for one
class is; an SGE mask says where a channel group is strengthened, whatever the class.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerGradCam
from torch import nn

from ..attention.geometry import cell_grid, upsample

__all__ = ["grad_cam"]


def _last_stage(model: nn.Module) -> nn.Module:
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} has no timm feature_info; pass layer= the module to explain")
    return model.get_submodule(info[-1]["module"])


def grad_cam(
    model: nn.Module, x: torch.Tensor, target: int | None = None, layer: nn.Module | None = None
) -> tuple[np.ndarray, int]:
    """Grad-CAM of one image for class ``target`` (default: the predicted class).

    captum hooks ``layer`` while it runs, so the model must not run forward passes for
    other callers at the same time (the dashboard gives Grad-CAM its own copy).

    Args:
        x: one preprocessed image, (1, 3, H, W).
        layer: the convolutional stage to explain (default: the last one).

    Returns:
        ``(cam, target)``: the map at input resolution, (H, W), each cell drawn at its
        receptive field's centre (:mod:`sevis.attention.geometry`), and the class. The map is
        ReLU'd, then min-max scaled to [0, 1] as pytorch-grad-cam does (``scale_cam_image``:
        minus its minimum, over its maximum), so its lowest value is 0 even when the
        evidence is everywhere; a map with no positive evidence stays all 0.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image of shape (1, 3, H, W), got {tuple(x.shape)}")
    layer = layer if layer is not None else _last_stage(model)
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    attribution = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    # Each cell's value at its receptive field's centre (see sevis.attention.geometry), not bilinear
    # resizing, which puts it half a cell down and right (+15.5 px at the last stage).
    cells = attribution[0, 0].detach().float().cpu().numpy()
    cam = upsample(cells, (int(x.shape[-2]), int(x.shape[-1])), cell_grid(model, layer, inclusive=True))
    low, high = float(cam.min()), float(cam.max())
    return ((cam - low) / (high - low) if high > low else np.zeros_like(cam)), target
