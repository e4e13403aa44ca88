"""Errors sevis raises for things a user brought: names, files, images, weights."""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "CheckpointError",
    "ImageError",
    "UnknownModelError",
    "WeightsUnavailableError",
]


class UnknownModelError(ValueError):
    """A model name that is neither a sevis model nor a timm model with SE/SGE layers."""


class CheckpointError(ValueError):
    """A weights file that cannot be read safely or does not fit the architecture."""


class ImageError(ValueError):
    """An upload that is not an image sevis accepts; the message is for a person."""


class WeightsUnavailableError(OSError):
    """The default pretrained weights could not be fetched; the message names alternatives."""


class ArchiveError(ValueError):
    """A zip upload that cannot be read as a whole (single files in it are reported apart)."""
