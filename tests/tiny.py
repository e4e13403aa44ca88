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
from timm.layers import CecaModule, EcaModule, GlobalContext, SEModule
from timm.models.resnest import ResNestBottleneck
from timm.models.resnet import Bottleneck, ResNet
from timm.models.sknet import SelectiveKernelBottleneck
from torch import nn

import sevis
import sevis.models
from sevis.attention import CBAM
from sevis.models.pytorchinsight import build_bam_resnet50

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


def _build(attn_layer: object, seed: int, pretrained: bool, **resnet: object) -> nn.Module:
    if pretrained:
        raise OSError("tiny test networks have no pretrained weights")
    args: dict[str, object] = {"block": Bottleneck, "block_args": {"attn_layer": attn_layer}}
    args.update(resnet)
    model = ResNet(layers=(3, 4, 6, 3), channels=(8, 16, 32, 64), stem_width=8, **args)  # type: ignore[arg-type]
    model.pretrained_cfg = dict(CONFIG)
    return randomize_(model, seed)


def _build_bam(seed: int, pretrained: bool) -> nn.Module:
    if pretrained:
        raise OSError("tiny test networks have no pretrained weights")
    model = build_bam_resnet50(channels=(8, 16, 32, 64), stem_width=8)
    model.pretrained_cfg = dict(CONFIG)
    return randomize_(model, seed)


# Branch gates as in timm's skresnext50_32x4d (SK: a 3x3 and a dilated 3x3 branch, not
# split) and resnest50d (split attention, radix 2 after a deep stem), 8 to 64 wide.
TINY_SK = {
    "block": SelectiveKernelBottleneck,
    "block_args": {"sk_kwargs": {"rd_ratio": 1 / 16, "rd_divisor": 8, "split_input": False}},
}
TINY_RESNEST = {
    "block": ResNestBottleneck,
    "block_args": {"radix": 2, "avd": True, "avd_first": False},
    "stem_type": "deep",
    "avg_down": True,
}


def register() -> None:
    """Add ``tiny_se`` (and ``tiny_se_b``, other weights), ``tiny_sge``, ``tiny_cbam``,
    ``tiny_bam``, ``tiny_gc``, ``tiny_eca``, ``tiny_ceca``, ``tiny_sk`` and ``tiny_resnest`` to sevis's models."""
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
    for name, build, description in (
        ("tiny_se_b", partial(_build, SEModule, 9), "tiny SE-ResNet, another training (tests)"),
        ("tiny_cbam", partial(_build, partial(CBAM, reduction=4), 6), "tiny CBAM-ResNet (tests)"),
        ("tiny_bam", partial(_build_bam, 7), "tiny BAM-ResNet (tests)"),
        (
            "tiny_gc",
            partial(_build, partial(GlobalContext, fuse_add=True, fuse_scale=False), 8),
            "tiny GC-ResNet (tests)",
        ),
        ("tiny_eca", partial(_build, EcaModule, 2), "tiny ECA-ResNet (tests)"),
        ("tiny_ceca", partial(_build, CecaModule, 3), "tiny circular-ECA-ResNet (tests)"),
        ("tiny_sk", partial(_build, None, 4, **TINY_SK), "tiny SK-ResNet (tests)"),
        ("tiny_resnest", partial(_build, None, 5, **TINY_RESNEST), "tiny ResNeSt (tests)"),
    ):
        sevis.register_model(name, build, description=description, pretrained_source="nowhere (a test network)")


register()
