"""Overlays are registered to receptive-field centres, measured by gradient centroids.

The centroid is measured on a copy of the network whose every convolution averages its
window (positive constant weights), max-pools average, batch norms and attention pass
values through: the gradient of a cell is then its receptive field's weighting, with no
random asymmetry, and its centroid is where the cell's value belongs. The input is large
enough that the central cell's receptive field is not cut by the image border (which
pulls centroids of border cells inwards).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import sevis
from sevis.attention.geometry import CellGrid, cell_grid, layer_grid, upsample

STAGE_ENDS = ("_2_3", "_3_4", "_4_6", "_5_3")


def averaging_copy(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model).float()
    for layer in sevis.find_attention(net):
        parent, _, child = layer.path.rpartition(".")
        setattr(net.get_submodule(parent), child, nn.Identity())
    for path, module in list(net.named_modules()):
        if isinstance(module, nn.MaxPool2d):
            parent, _, child = path.rpartition(".")
            pool = nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)
            setattr(net.get_submodule(parent) if parent else net, child, pool)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                (
                    module.weight.fill_(1.0),
                    module.bias.zero_(),
                    module.running_mean.zero_(),
                    module.running_var.fill_(1.0),
                )
    return net.eval()


def centroid(net: nn.Module, path: str, size: int) -> tuple[float, float, tuple[int, int]]:
    """Gradient centroid (y, x) on a size x size input of the central cell of the feature
    map entering the module at ``path``, and that cell."""
    seen = {}
    handle = net.get_submodule(path).register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    x = torch.ones(1, 3, size, size, requires_grad=True)
    try:
        net(x)
    finally:
        handle.remove()
    h, w = seen["x"].shape[-2:]
    i, j = h // 2, w // 2
    (grad,) = torch.autograd.grad(seen["x"][0, :, i, j].sum(), x)
    weight = grad.abs().sum(1)[0].double()
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    return float((weight * ys).sum() / weight.sum()), float((weight * xs).sum() / weight.sum()), (i, j)


def drawn(grid: CellGrid, shape: tuple[int, int], cell: tuple[int, int], size: int) -> tuple[float, float]:
    """Where an overlay draws one cell: the peak of the upsampled map that is 1 there, 0 elsewhere."""
    heat = np.zeros(shape)
    heat[cell] = 1.0
    full = upsample(heat, (size, size), grid)
    y, x = np.unravel_index(full.argmax(), full.shape)
    return float(y), float(x)


def check_registration(model: nn.Module, size: int) -> list[tuple[str, float]]:
    net = averaging_copy(model)
    offsets = []
    for layer in sevis.find_attention(model):
        if not layer.name.endswith(STAGE_ENDS):
            continue
        cy, cx, cell = centroid(net, layer.path, size)
        grid = layer_grid(model, layer.name)
        shape = (int(np.ceil(size / grid.stride_y)), int(np.ceil(size / grid.stride_x)))
        y, x = drawn(grid, shape, cell, size)
        assert abs(y - cy) <= 1 and abs(x - cx) <= 1, (layer.name, (y, x), (cy, cx))
        # Plain bilinear resizing (align_corners=False) draws it half a cell off.
        y0, _ = drawn_bilinear(shape, cell, size)
        offsets.append((layer.name, round(y0 - cy, 1)))
    return offsets


def drawn_bilinear(shape: tuple[int, int], cell: tuple[int, int], size: int) -> tuple[float, float]:
    heat = np.zeros(shape)
    heat[cell] = 1.0
    full = upsample(heat, (size, size))
    y, x = np.unravel_index(full.argmax(), full.shape)
    return float(y), float(x)


def test_tiny_resnet_overlays_sit_on_receptive_field_centres(tiny_sge):
    offsets = check_registration(tiny_sge, 896)
    assert [name for name, _ in offsets] == ["SGE_2_3", "SGE_3_4", "SGE_4_6", "SGE_5_3"]
    # bilinear resizing: stride * (i + 1/2) - 1/2, the peak pixel within a pixel of it
    for (_, off), stride in zip(offsets, (4, 8, 16, 32), strict=True):
        assert abs(off - (stride - 1) / 2) <= 1


@pytest.mark.slow
def test_the_senet_authors_resnet_has_its_centres_two_pixels_in(se_model):
    """Caffe's unpadded max-pool moves every centre by 2 px; sevis.attention.geometry knows it."""
    check_registration(se_model, 640)
    assert layer_grid(se_model, "SE_5_3") == CellGrid(2.0, 32.0, 2.0, 32.0)


def test_grids_of_stages_and_of_a_whole_module(tiny_sge):
    assert layer_grid(tiny_sge, "SGE_2_1") == CellGrid(0.0, 4.0, 0.0, 4.0)
    assert cell_grid(tiny_sge, tiny_sge.layer4, inclusive=True) == CellGrid(0.0, 32.0, 0.0, 32.0)
    assert cell_grid(tiny_sge, tiny_sge.layer4) == CellGrid(0.0, 16.0, 0.0, 16.0)  # what enters it
    with pytest.raises(ValueError, match="no attention layer 'SE_9_9'"):
        layer_grid(tiny_sge, "SE_9_9")
    with pytest.raises(ValueError, match="not a module of"):
        cell_grid(tiny_sge, nn.Conv2d(1, 1, 1))


def test_upsampling_places_values_and_interpolates_between_centres():
    grid = CellGrid(2.0, 4.0, 0.0, 8.0)
    heat = np.array([[0.0, 1.0], [1.0, 3.0]])  # rows centred at pixels 2 and 6, columns at 0 and 8
    full = upsample(heat, (8, 10), grid)
    assert full[2, 0] == 0.0 and full[2, 8] == 1.0 and full[6, 0] == 1.0 and full[6, 8] == 3.0
    assert full[4, 4] == pytest.approx(1.25)  # halfway in both directions: the mean of the four
    assert full[0, 0] == 0.0 and full[7, 9] == 3.0  # beyond the outermost centres: their values
