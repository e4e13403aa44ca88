"""Grad-CAM through captum against Grad-CAM written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from sevis.hooks.gradcam import grad_cam


def test_equals_the_definition(se_model, batch):
    x = batch[:1]
    stage = se_model.layer4
    store = {}
    handle = stage.register_forward_hook(lambda m, a, out: store.update(a=out))
    try:
        logits = se_model(x)
        target = int(logits.argmax(1))
        (grads,) = torch.autograd.grad(logits[0, target], store["a"])
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k: pooled gradients
    cam = torch.relu((weights * store["a"]).sum(1, keepdim=True))
    cells = cam[0, 0].detach().double().numpy()  # (7, 7)
    # Each cell at its receptive field's centre: 2 + 32 i for the SENet authors' network
    # (a 7x7/2 convolution padded 3, a 3x3/2 max-pool unpadded, then strides on 1x1 convs).
    centres, pixels = 2 + 32 * np.arange(7), np.arange(224)
    along_x = np.array([np.interp(pixels, centres, row) for row in cells])
    cam = np.array([np.interp(pixels, centres, along_x[:, j]) for j in range(224)]).T
    expected = (cam - cam.min()) / (cam.max() - cam.min())  # min-max, as pytorch-grad-cam's scale_cam_image

    ours, chosen = grad_cam(se_model, x)
    assert chosen == target
    assert ours.shape == (224, 224) and ours.max() == pytest.approx(1.0) and ours.min() == pytest.approx(0.0)
    assert_allclose(ours, expected, atol=1e-4)
    other, chosen = grad_cam(se_model, x, target=1)
    assert chosen == 1 and not np.allclose(other, ours)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in se_model.modules()) == 0


def test_one_image_only(se_model, batch):
    with pytest.raises(ValueError, match=r"one image of shape \(1, 3, H, W\)"):
        grad_cam(se_model, batch)
