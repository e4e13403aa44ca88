"""The PytorchInsight ResNet-50 family (``implus/PytorchInsight``, Li et al.): networks with
CBAM, BAM and SK attention trained with one recipe beside SGE-ResNet-50 (100 epochs, same
settings: the SGE paper's comparison), built so that the authors' training checkpoints load
strictly in their own layout.

Each is timm's ResNet-50 (the same stem, stages, downsampling and head, under the same key
names as the authors' torchvision-style ResNet) with the authors' attention placed where they
placed it, checked against their code (``classification/models/imagenet/resnet_*.py``) in
``tests/test_pytorchinsight.py``:

* CBAM-ResNet-50: CBAM after each bottleneck's last BatchNorm, before the residual sum
  (timm's attention slot ``se``; the checkpoint calls it ``cbam``).
* BAM-ResNet-50: a plain ResNet-50 with BAM after stages 2, 3 and 4 (``bam1`` ... ``bam3``).
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

__all__ = ["BAMResNet", "build_bam_resnet50", "build_cbam_resnet50", "build_sk_resnet50", "cbam_keys"]

_LAYERS = (3, 4, 6, 3)


def _local_only(pretrained: bool) -> None:
    if pretrained:
        raise ValueError("PytorchInsight weights come from a file of the weights folder")


def build_cbam_resnet50(pretrained: bool = False) -> nn.Module:
    """CBAM-ResNet-50 (77.63 % top-1 in PytorchInsight's table)."""
    _local_only(pretrained)
    return ResNet(block=Bottleneck, layers=_LAYERS, block_args={"attn_layer": CBAM})  # type: ignore[arg-type]


def cbam_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' CBAM slot ``cbam`` is timm's ``se``."""
    return {k.replace(".cbam.", ".se."): v for k, v in state.items()}


class BAMResNet(ResNet):
    """timm's ResNet with a BAM after each of the first three stages (``bam1`` ... ``bam3``)."""

    def __init__(self, layers: tuple[int, ...] = _LAYERS, **resnet: Any) -> None:
        super().__init__(block=Bottleneck, layers=layers, **resnet)  # type: ignore[arg-type]
        widths = [cast(int, info["num_chs"]) for info in self.feature_info[1:4]]  # stages 2 to 4's outputs
        self.bam1, self.bam2, self.bam3 = BAM(widths[0]), BAM(widths[1]), BAM(widths[2])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        stem, stages = self.get_submodule("maxpool"), [self.get_submodule(f"layer{i}") for i in range(1, 5)]
        x = stem(self.act1(self.bn1(self.conv1(x))))
        for stage, bam in zip(stages, (self.bam1, self.bam2, self.bam3), strict=False):  # stages 2 to 4
            x = bam(stage(x))
        return stages[3](x)


def build_bam_resnet50(pretrained: bool = False) -> nn.Module:
    """BAM-ResNet-50 (76.90 % top-1 in PytorchInsight's table)."""
    _local_only(pretrained)
    return BAMResNet()


def build_sk_resnet50(pretrained: bool = False) -> nn.Module:
    """PytorchInsight's SK-ResNet-50 (77.54 % top-1 in its table)."""
    _local_only(pretrained)
    return ResNet(block=SKBottleneck, layers=_LAYERS, zero_init_last=False)  # type: ignore[arg-type]
