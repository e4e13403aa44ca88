"""Several networks' attention side by side: the curves of
:func:`sevis.figures.module_depth_curves` from analyses or saved runs of the same images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..attention.kinds import get_kind
from ..attention.layers import prefix_of
from ..stats.classes import ClassStats

__all__ = ["HasStats", "module_curves"]


class HasStats(Protocol):
    """What :func:`module_curves` reads: an :class:`sevis.Analysis` or a saved run's
    :class:`sevis.runs.Run`."""

    @property
    def stats(self) -> Mapping[str, ClassStats]: ...


def module_curves(results: Mapping[str, HasStats]) -> dict[str, ClassStats]:
    """Each network's statistics as curves, legend name -> statistics of one kind.

    A network with one kind of layers gives one curve under its own name; one with several
    (CBAM-ResNet-50: channel gates and spatial gates) one per kind, named with its layers'
    prefix (``"cbam_resnet50 CBAMS"``).

    Args:
        results: a name per network (``"se_resnet50"``) -> its analysis or saved run, all of
            the same images with the same labels (the comparison means nothing otherwise).
    """
    curves: dict[str, ClassStats] = {}
    for name, result in results.items():
        kinds = {kind: stats for kind, stats in result.stats.items() if stats.layers}
        for kind, stats in kinds.items():
            label = name if len(kinds) == 1 else f"{name} {prefix_of(stats.layers) or get_kind(kind).prefix}"
            curves[label] = stats
    return curves
