"""Spatial Group-wise Enhance (SGE), Li, Hu and Yang 2019, arXiv:1905.09646.

The module follows the reference implementation (PytorchInsight) exactly: unbiased
standard deviation, epsilon 1e-5 added to it, ``weight`` (gamma) initialised to 0 and
``bias`` (beta) to 1, both of shape (1, G, 1, 1) so that PytorchInsight checkpoints
load key for key. The one difference is structural: the sigmoid is the named child
``gate``, so a forward hook on it sees exactly the spatial masks the block applied.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpatialGroupEnhance"]


class SpatialGroupEnhance(nn.Module):
    """SGE attention over a (N, C, H, W) feature map split into ``groups`` channel groups.

    ``gate`` outputs the spatial masks sigma(a) with shape (N * G, 1, H, W).
    """

    def __init__(
        self,
        channels: int,
        groups: int = 64,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.channels = channels
        self.groups = groups
        self.eps = eps
        # device/dtype: timm's blocks pass them to every attention layer they create.
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1, device=device, dtype=dtype))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # NOTE reshape, not view: a channels-last input is not contiguous in this layout.
        xg = x.reshape(n * self.groups, c // self.groups, h, w)
        # c_i = g . x_i with g the group's spatial mean: one coefficient per position.
        coef = (xg * xg.mean(dim=(2, 3), keepdim=True)).sum(dim=1).reshape(n * self.groups, h * w)
        coef = coef - coef.mean(dim=1, keepdim=True)
        coef = coef / (coef.std(dim=1, keepdim=True) + self.eps)
        a = coef.reshape(n, self.groups, h, w) * self.weight + self.bias
        mask = self.gate(a.reshape(n * self.groups, 1, h, w))
        return (xg * mask).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, eps={self.eps}"
