"""Where a feature map's cells sit on the image: registering overlays to receptive fields.

A cell of a convolutional feature map summarises its receptive field, whose centre is
where its value belongs on the image. For cell i of a map made by a chain of
convolutions and poolings, that centre is ``offset + stride * i`` input pixels (pixel p
centred at p), with, for each layer of kernel k, stride s, padding p, dilation d in turn::

    offset += stride * (d * (k - 1) / 2 - p);   stride *= s

:func:`cell_grid` walks the model's modules in order up to the one whose input (or
output) is the map, along the main path (skipping residual ``downsample`` branches,
which the main path matches, and the attention modules' own 1x1 convolutions). For
timm's ResNets the centres are ``stride * i``; for the SENet authors' SE-ResNet-50
(Caffe's max-pool without padding) ``2 + stride * i``. Bilinear upsampling with
``align_corners=False`` instead puts cell i at ``stride * (i + 1/2) - 1/2``: half a cell
down and right (+15.5 px at stride 32). :func:`upsample` draws each value at its centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from .registry import find_attention

__all__ = ["CellGrid", "cell_grid", "layer_grid", "upsample"]

_WALKED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class CellGrid:
    """Cell (i, j) of a feature map is centred at input pixel
    (``offset_y + stride_y * i``, ``offset_x + stride_x * j``)."""

    offset_y: float
    stride_y: float
    offset_x: float
    stride_x: float

    def centres(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel rows of the h cells, pixel columns of the w cells."""
        return self.offset_y + self.stride_y * np.arange(h), self.offset_x + self.stride_x * np.arange(w)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def cell_grid(model: nn.Module, module: nn.Module, *, inclusive: bool = False) -> CellGrid:
    """The grid of the feature map entering ``module`` (``inclusive=True``: leaving it).

    Raises:
        ValueError: ``module`` is not part of ``model``.
    """
    target = next((path for path, m in model.named_modules() if m is module), None)
    if target is None:
        raise ValueError(f"{type(module).__name__} is not a module of {type(model).__name__}")
    attention = [layer.path for layer in find_attention(model)]
    offset, stride = [0.0, 0.0], [1.0, 1.0]
    entered = False
    for path, m in model.named_modules():  # definition order: a subtree before its next sibling
        inside = path == target or path.startswith(target + ".")
        if inside and not inclusive:
            break  # the map entering the module is made
        if entered and not inside:
            break  # the module's output is made
        entered = entered or inside
        parts = path.split(".")
        if "downsample" in parts or any(path == a or path.startswith(a + ".") for a in attention):
            continue
        if isinstance(m, _WALKED):
            kernel, step = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
            padding, dilation = _pair(m.padding), _pair(getattr(m, "dilation", 1))  # type: ignore[arg-type]
            for axis in (0, 1):
                offset[axis] += stride[axis] * (dilation[axis] * (kernel[axis] - 1) / 2 - padding[axis])
                stride[axis] *= step[axis]
    return CellGrid(offset[0], stride[0], offset[1], stride[1])


def layer_grid(model: nn.Module, layer: str) -> CellGrid:
    """The grid of the feature map an attention layer (by name, e.g. ``SGE_4_6``) works on."""
    for found in find_attention(model):
        if found.name == layer:
            return cell_grid(model, found.module)
    raise ValueError(f"no attention layer {layer!r} in {type(model).__name__}")


def upsample(heat: np.ndarray, size: tuple[int, int], grid: CellGrid | None = None) -> np.ndarray:
    """An (h, w) map resized to ``size`` = (H, W) pixels.

    With ``grid``, each cell's value is placed at its receptive field's centre and values
    between centres are interpolated linearly (beyond the outermost centres they stay as
    the outermost value). Without, plain bilinear resizing with ``align_corners=False``
    (cells spread evenly over the image, half a cell off their receptive fields).
    """
    heat = np.asarray(heat, dtype=np.float64)
    h, w = heat.shape
    if grid is None:
        import torch
        import torch.nn.functional as F

        t = torch.as_tensor(heat, dtype=torch.float32)[None, None]
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    rows, cols = grid.centres(h, w)
    ys, xs = np.arange(size[0], dtype=np.float64), np.arange(size[1], dtype=np.float64)
    # Separable linear interpolation: along x for every cell row, then along y.
    along_x = np.stack([np.interp(xs, cols, heat[i]) for i in range(h)])
    return np.stack([np.interp(ys, rows, along_x[:, x]) for x in range(size[1])], axis=1).astype(np.float32)
