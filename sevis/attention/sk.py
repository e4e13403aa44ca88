"""The selective-kernel bottleneck of PytorchInsight's SK-ResNet-50 (``implus/PytorchInsight``,
``classification/models/imagenet/resnet_sk.py``), after SKNet (Li et al., CVPR 2019,
arXiv:1903.06586) but, for a fair comparison with ResNet-50, on a ResNet bottleneck.

Its 3x3 convolution becomes two branches of the same size: a plain 3x3 convolution and a
grouped one (32 groups), each with BatchNorm and ReLU. Their outputs U_1, U_2 are pooled and
summed, s = GAP(U_1) + GAP(U_2); z = relu(BN(W_1 s)) (planes / 16 channels); the branch
weights are a softmax over the two branches of W_2 z, per channel, (N, 2, planes); the block
continues with a_1 U_1 + a_2 U_2. The softmax is the named child ``gate``. Attribute names
are the checkpoint's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["SKBottleneck"]


class SKBottleneck(nn.Module):
    """A ResNet bottleneck whose 3x3 convolution selects between a plain and a grouped
    branch. Takes timm's ``ResNet`` block arguments; those it has no use for are ignored.

    Attributes:
        num_paths: the branches, 2 (what sevis's branch kind reads as M).
    """

    expansion = 4
    num_paths = 2

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2g = nn.Conv2d(planes, planes, 3, stride, 1, bias=False, groups=32)
        self.bn2g = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.conv_fc1 = nn.Conv2d(planes, planes // 16, 1, bias=False)
        self.bn_fc1 = nn.BatchNorm2d(planes // 16)
        self.conv_fc2 = nn.Conv2d(planes // 16, 2 * planes, 1, bias=False)
        self.gate = nn.Softmax(dim=1)
        self.planes = planes

    def zero_init_last(self) -> None:
        """timm's ResNet calls this on each block; the authors' network did not zero it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        u1 = self.relu(self.bn2(self.conv2(out)))
        u2 = self.relu(self.bn2g(self.conv2g(out)))
        s = u1.mean((2, 3), keepdim=True) + u2.mean((2, 3), keepdim=True)
        z = self.relu(self.bn_fc1(self.conv_fc1(s)))
        a = self.gate(self.conv_fc2(z).reshape(-1, 2, self.planes, 1, 1))  # (N, 2, planes, 1, 1)
        out = self.bn3(self.conv3(u1 * a[:, 0] + u2 * a[:, 1]))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)
