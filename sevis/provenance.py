"""Which model and weights produced a result: one type for models, analyses, runs, exports."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNTRAINED_SEED", "Provenance"]

UNTRAINED_SEED = 0
"""Seed of the random initialisation behind ``weights="untrained"``."""


@dataclass(frozen=True)
class Provenance:
    """Which model and weights produced a result.

    Attributes:
        model: the model name given to :func:`sevis.load_model`.
        weights: where the weights came from, for people: a source, a file path, or
            ``"untrained"``.
        untrained: True for random weights; every output should say so.
        weights_sha256: SHA-256 of the weights file, when one was read.
        untrained_seed: the seed of untrained weights (:data:`UNTRAINED_SEED`), which
            identifies them as the SHA-256 identifies a file; None for trained weights, or
            untrained ones made before sevis seeded them.
    """

    model: str
    weights: str
    untrained: bool
    weights_sha256: str | None = None
    untrained_seed: int | None = None

    def columns(self) -> dict[str, object]:
        """The leading columns every exported table carries."""
        return {
            "model": self.model,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "untrained": self.untrained,
            "untrained_seed": self.untrained_seed,
        }
