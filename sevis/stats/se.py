"""SE's per-class statistics in its own terms: each channel's excitation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch

from .classes import ClassStats

__all__ = ["ExcitationStats", "predicted_labels"]


class ExcitationStats(ClassStats):
    """Per-class statistics of SE excitations: one summary field, the excitation s (C,)."""

    _COLUMNS: ClassVar[Mapping[str, str]] = {"excitation_mean": "mean", "excitation_std": "std"}

    def __init__(self) -> None:
        super().__init__(("excitation",), "channel")

    def update(self, excitations: Mapping[str, torch.Tensor | np.ndarray], labels: Sequence[str]) -> None:
        """Add a batch of excitations ``{layer: (N, C)}`` with one label per image."""
        self.add({k: {"excitation": v} for k, v in excitations.items()}, labels, excitations)


def predicted_labels(logits: torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """Top-1 class name of each row of ``logits`` (N, K)."""
    return [class_names[i] for i in logits.argmax(dim=1).tolist()]
