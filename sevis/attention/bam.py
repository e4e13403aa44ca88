"""BAM, the Bottleneck Attention Module (Park et al., BMVC 2018, arXiv:1807.06514), as
PytorchInsight trained it in its BAM-ResNet-50 (``implus/PytorchInsight``,
``classification/models/imagenet/resnet_bam.py``): one module at each of the three stage
boundaries, F' = F * (1 + sigmoid(M_c(F) * M_s(F))).

M_c is a channel branch, MLP(avgpool(F)) with BatchNorm, (N, C); M_s a spatial branch of
1x1 reduction and two dilated 3x3 convolutions (dilation 4), (N, 1, H, W); both broadcast to
(N, C, H, W). NOTE the paper writes sigma(M_c + M_s); the authors' code, with which the
PytorchInsight checkpoint was trained, multiplies them, and this module does as the code does.
The sigmoid is the named child ``gate``, so a forward hook sees sigmoid(M_c * M_s), (N, C, H, W);
the block's map is 1 + that. Attribute names are the checkpoint's.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BAM"]


class _ChannelBranch(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", nn.Flatten())
        self.gate_c.add_module("gate_c_fc_0", nn.Linear(channels, hidden))
        self.gate_c.add_module("gate_c_bn_1", nn.BatchNorm1d(hidden))
        self.gate_c.add_module("gate_c_relu_1", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_c(x.mean((2, 3)))[:, :, None, None]  # (N, C, 1, 1)


class _SpatialBranch(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, dilated: int = 2, dilation: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate_s = nn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", nn.Conv2d(channels, hidden, 1))
        self.gate_s.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        self.gate_s.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(dilated):
            self.gate_s.add_module(
                f"gate_s_conv_di_{i}", nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation)
            )
            self.gate_s.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x)  # (N, 1, H, W)


class BAM(nn.Module):
    """F * (1 + sigmoid(M_c(F) * M_s(F))) for features F of ``channels`` channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.channel_att = _ChannelBranch(channels)
        self.spatial_att = _SpatialBranch(channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.gate(self.channel_att(x) * self.spatial_att(x)))
