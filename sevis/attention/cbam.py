"""CBAM, the Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv:1807.06521),
as PytorchInsight trained it in its CBAM-ResNet-50 (``implus/PytorchInsight``,
``classification/models/imagenet/resnet_cbam.py``).

A channel gate, sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))) with one MLP shared by both
descriptors, (N, C); then a spatial gate on the gated features, sigmoid(BN(conv7x7([max over
channels, mean over channels]))), (N, 1, H, W). Each sigmoid is a named child, so a forward
hook sees exactly the values the block multiplies by. Attribute names (``ChannelGate``,
``SpatialGate``, ``mlp``, ``spatial``) are the checkpoint's, so its weights load as saved.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CBAM", "CBAMChannelGate", "CBAMSpatialGate"]


class CBAMChannelGate(nn.Module):
    """x * sigmoid(MLP(avg) + MLP(max)); the MLP is Linear(C, C/r), ReLU, Linear(C/r, C)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        # NOTE index 0 holds the authors' Flatten (no weights): the Linear layers stay at 1 and 3.
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.sigmoid(self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3))))  # (N, C)
        return x * scale[:, :, None, None]


class _ConvBN(nn.Module):
    """The spatial gate's 7x7 convolution and its BatchNorm (the checkpoint's ``spatial.conv``
    and ``spatial.bn``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class CBAMSpatialGate(nn.Module):
    """x * sigmoid(BN(conv7x7([max_c x, mean_c x]))): one (H, W) map per image."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = _ConvBN()
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)  # the authors' order
        return x * self.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """The channel gate, then the spatial gate (sequential, as the paper finds best)."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.ChannelGate = CBAMChannelGate(channels, reduction)
        self.SpatialGate = CBAMSpatialGate()
        self.to(device=device, dtype=dtype)  # timm's blocks pass where to build their attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))
