"""Several networks side by side on the same images: the curves of
:func:`sevis.figures.module_depth_curves` from analyses or saved runs, and their ablations
(:func:`sevis.ablate`) as one table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import pandas as pd

from ..attention.kinds import get_kind
from ..attention.layers import prefix_of
from ..stats.classes import ClassStats

__all__ = ["HasStats", "HasTable", "compare_ablations", "module_curves"]


class HasStats(Protocol):
    """What :func:`module_curves` reads: an :class:`sevis.Analysis` or a saved run's
    :class:`sevis.runs.Run`."""

    @property
    def stats(self) -> Mapping[str, ClassStats]: ...


class HasTable(Protocol):
    """What :func:`compare_ablations` reads of an :class:`sevis.Ablation`: its table."""

    @property
    def table(self) -> pd.DataFrame: ...


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


def compare_ablations(tables: Mapping[str, HasTable | pd.DataFrame]) -> pd.DataFrame:
    """Several networks' ablations of the same images as one long table, side by side by
    condition: a ``network`` column, then each table's rows (``condition`` … ``top1_kept``).
    Conditions are the paper's (none, each stage, all) whatever the module: what "removed"
    means for each is its kind's (:meth:`sevis.attention.kinds.AttentionKind.removed`).

    Raises:
        ValueError: no tables, or tables of different numbers of images.
    """
    if not tables:
        raise ValueError("tables must hold at least one network's ablation")
    frames = [(name, t if isinstance(t, pd.DataFrame) else t.table) for name, t in tables.items()]
    sizes = {int(frame["images"].iloc[0]) for _, frame in frames}
    if len(sizes) > 1:
        raise ValueError(f"the ablations counted different numbers of labelled images ({sorted(sizes)}): other images")
    return pd.concat([frame.assign(network=name) for name, frame in frames], ignore_index=True)[
        ["network", *frames[0][1].columns]
    ]
