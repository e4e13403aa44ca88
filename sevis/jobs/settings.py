"""A run's settings as one object: what both extraction engines and the CLI pass along."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..runs.writer import PART_SIZE

__all__ = ["RunSettings"]


@dataclass(frozen=True)
class RunSettings:
    """How a dataset is extracted, whichever engine runs it.

    Attributes:
        batch_size: images per forward pass.
        workers: decoding processes (local engine; 0: in this process) or model-holding
            actors (Ray engine).
        per_class, seed: at most ``per_class`` images per label, sampled with ``seed``
            (see :func:`sevis.data.files.discover`).
        layers: layer names to keep (default all).
        resume: carry on from ``{out}.parts`` or a finished ``out``.
        overwrite: delete ``out`` and its parts first.
        part_size: rows pending before a part file is written (default 1: every batch as
            soon as it is done, so a kill loses at most the batch in flight).
        labels, synsets: a label file for the images (see :func:`sevis.data.labels.read_labels`:
            the devkit's ground truth with its synset order, Kaggle's CSV, or path,label).
        distributions: keep the distributions before and after SGE of the run's images,
            counted over all of them (:mod:`sevis.runs.distributions`; models with SGE only).
    """

    batch_size: int = 32
    workers: int = 2
    per_class: int | None = None
    seed: int = 0
    layers: tuple[str, ...] | None = None
    resume: bool = False
    overwrite: bool = False
    part_size: int = PART_SIZE
    labels: str | None = None
    synsets: str | None = None
    distributions: bool = True

    def __post_init__(self) -> None:
        if self.layers is not None and not isinstance(self.layers, tuple):
            if isinstance(self.layers, str) or not isinstance(self.layers, Sequence):
                raise TypeError(f"layers must be a sequence of layer names, got {type(self.layers).__name__}")
            object.__setattr__(self, "layers", tuple(self.layers))  # frozen: set once, here
        for name, least in (("batch_size", 1), ("workers", 0), ("part_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
        if self.per_class is not None and (not isinstance(self.per_class, int) or self.per_class < 1):
            raise ValueError(f"per_class must be at least 1 or None, got {self.per_class!r}")

    @classmethod
    def of(cls, settings: RunSettings | None = None, **options: Any) -> RunSettings:
        """``settings`` (default: the defaults) with ``options`` changed.

        Raises:
            TypeError: an option that is no field of :class:`RunSettings`.
        """
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown run settings {unknown}; known: {[f.name for f in dataclasses.fields(cls)]}")
        return dataclasses.replace(settings or cls(), **options)
