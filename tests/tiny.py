"""Tiny seeded SE and SGE networks with the real layout: ResNet bottlenecks in stages of
3, 4, 6 and 3 blocks (so layers are named SE_2_1 ... SE_5_3 as in ResNet-50), 1,000
ImageNet classes and the same 224-pixel preprocessing, but 8 to 64 channels wide: a
forward pass costs milliseconds. Tests that need no real ResNet-50 use these.

Registered as sevis models ``tiny_se`` and ``tiny_sge`` (also in a dashboard started with
``SEVIS_PLUGINS=tiny``); their "pretrained" weights are unavailable, as offline.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import SEModule
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

import sevis
import sevis.models

CONFIG = sevis.models.IMAGENET_CONFIG  # ResNet-50's: 224 px, crop 0.875, ImageNet mean and std
GROUPS = 8


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Random but well-conditioned values for every parameter and buffer.

    Default inits leave BatchNorm at identity and timm zero-initialises each block's
    last BN, so every residual branch (and so every SE input) would be zero; SGE's
    gamma = 0 would make every mask constant. Tests need attention that varies.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith(".weight") and tensor.ndim == 1:  # BatchNorm scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5)
            elif tensor.ndim == 4 and tensor.shape[0] == 1:  # SGE gamma and beta, (1, G, 1, 1)
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            elif tensor.ndim >= 2:  # conv and linear weights: He init
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            else:  # biases
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


def _build(attn_layer: object, seed: int, pretrained: bool) -> nn.Module:
    if pretrained:
        raise OSError("tiny test networks have no pretrained weights")
    model = ResNet(
        block=Bottleneck,
        layers=(3, 4, 6, 3),
        channels=(8, 16, 32, 64),
        stem_width=8,
        block_args={"attn_layer": attn_layer},
    )
    model.pretrained_cfg = dict(CONFIG)
    return randomize_(model, seed)


def register() -> None:
    """Add ``tiny_se`` and ``tiny_sge`` to sevis's models."""
    sevis.register_model(
        "tiny_se",
        partial(_build, SEModule, 0),
        description="tiny SE-ResNet (tests)",
        pretrained_source="nowhere (a test network)",
    )
    sevis.register_model(
        "tiny_sge",
        partial(_build, partial(sevis.SpatialGroupEnhance, groups=GROUPS), 1),
        description="tiny SGE-ResNet (tests)",
        pretrained_source="nowhere (a test network)",
    )


register()
