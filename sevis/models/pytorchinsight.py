"""The PytorchInsight ResNet-50 family (``implus/PytorchInsight``, Li et al.): networks with
CBAM, BAM and SK attention trained with one recipe beside SGE-ResNet-50 (100 epochs, same
settings: the SGE paper's comparison), built so that the authors' training checkpoints load
strictly in their own layout.

Each is timm's ResNet-50 (the same stem, stages, downsampling and head, under the same key
names as the authors' torchvision-style ResNet) with the authors' attention placed where they
placed it, checked against their code (``classification/models/imagenet/resnet_*.py``) in
``tests/test_pytorchinsight.py``:

* ResNet-50: the recipe's network without attention (the authors' ``old_resnet50``).
* CBAM-ResNet-50: CBAM after each bottleneck's last BatchNorm, before the residual sum
  (timm's attention slot ``se``; the checkpoint calls it ``cbam``).
* BAM-ResNet-50: a plain ResNet-50 with BAM after stages 2, 3 and 4 (the checkpoint's ``bam1``
  ... ``bam3``; here each stage's last module).
* SK-ResNet-50: each bottleneck's 3x3 convolution selects between a plain and a grouped branch.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from ..attention.bam import BAM
from ..attention.cbam import CBAM
from ..attention.sk import SKBottleneck

__all__ = [
    "bam_keys",
    "build_bam_resnet50",
    "build_cbam_resnet50",
    "build_resnet50",
    "build_sk_resnet50",
    "cbam_keys",
]

_LAYERS = (3, 4, 6, 3)
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _local_only(pretrained: bool) -> None:
    if pretrained:
        raise ValueError("PytorchInsight weights come from a file of the weights folder")


def build_resnet50(pretrained: bool = False) -> nn.Module:
    """The plain ResNet-50 of the same recipe (76.38 % top-1; the checkpoint's ``old_resnet50``)."""
    _local_only(pretrained)
    return ResNet(block=Bottleneck, layers=_LAYERS, zero_init_last=False)  # type: ignore[arg-type]


def build_cbam_resnet50(pretrained: bool = False) -> nn.Module:
    """CBAM-ResNet-50 (77.63 % top-1 in PytorchInsight's table)."""
    _local_only(pretrained)
    return ResNet(block=Bottleneck, layers=_LAYERS, block_args={"attn_layer": CBAM})  # type: ignore[arg-type]


def cbam_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' CBAM slot ``cbam`` is timm's ``se``."""
    return {k.replace(".cbam.", ".se."): v for k, v in state.items()}


def build_bam_resnet50(pretrained: bool = False, **resnet: Any) -> nn.Module:
    """BAM-ResNet-50 (76.90 % top-1 in PytorchInsight's table): BAM appended to stages 2, 3
    and 4, so each is the last module of its stage (``layer1.3``, ``layer2.4``, ``layer3.6``;
    layers ``BAM_2_4``, ``BAM_3_5``, ``BAM_4_7``: after the stage's last block) and the network
    stays stem, stages, head (the ablation removes each with its stage). ``resnet``: timm
    ``ResNet`` arguments (tests build narrower ones)."""
    _local_only(pretrained)
    model = ResNet(block=Bottleneck, layers=_LAYERS, **resnet)  # type: ignore[arg-type]
    for stage, info in zip(_STAGES[:3], model.feature_info[1:4], strict=True):
        cast(nn.Sequential, model.get_submodule(stage)).append(BAM(cast(int, info["num_chs"])))
    return model


_BAM_PLACES = {"bam1": "layer1.3", "bam2": "layer2.4", "bam3": "layer3.6"}


def bam_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' ``bam1`` ... ``bam3`` (after stages 2 to 4) are the last modules of timm's
    ``layer1`` ... ``layer3``."""
    out = {}
    for key, value in state.items():
        head, dot, rest = key.partition(".")
        out[f"{_BAM_PLACES[head]}.{rest}" if head in _BAM_PLACES and dot else key] = value
    return out


def build_sk_resnet50(pretrained: bool = False) -> nn.Module:
    """PytorchInsight's SK-ResNet-50 (77.54 % top-1 in its table)."""
    _local_only(pretrained)
    return ResNet(block=SKBottleneck, layers=_LAYERS, zero_init_last=False)  # type: ignore[arg-type]
