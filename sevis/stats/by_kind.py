"""Results that hold statistics of several kinds: SE's and SGE's by name."""

from __future__ import annotations

from .classes import ClassStats
from .se import ExcitationStats
from .sge import MaskStats

__all__ = ["StatsByKind"]


class StatsByKind:
    """For results holding ``stats``, kind name -> :class:`ClassStats`: the SE and SGE
    statistics by name (empty accumulators where the network has none)."""

    stats: dict[str, ClassStats]

    @property
    def se(self) -> ExcitationStats:
        """Per-class statistics of the SE layers."""
        stats = self.stats.get("se")
        return stats if isinstance(stats, ExcitationStats) else ExcitationStats()

    @property
    def sge(self) -> MaskStats:
        """Per-class statistics of the SGE layers."""
        stats = self.stats.get("sge")
        return stats if isinstance(stats, MaskStats) else MaskStats()
