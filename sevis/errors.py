"""Errors sevis raises for things a user brought: names, files, images, weights, runs.

Every one derives from :class:`SevisError`, so the command line and the dashboard
catch sevis's own errors (whose messages are written for a person) and let real bugs
surface as tracebacks. Each also derives from the builtin it refines (``ValueError``
or ``OSError``), so code written against those keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "CheckpointError",
    "DataError",
    "ImageError",
    "RunError",
    "SevisError",
    "UnknownLayerError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "shortened",
]


def shortened(text: str, limit: int = 80) -> str:
    """``text`` for a message: whole if it has at most ``limit`` characters, else its first
    ``limit - 1`` and an ellipsis (a name from a user's file is never echoed unbounded)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SevisError(Exception):
    """Base of every error sevis raises about a user's input; the message is for a person."""


class UnknownModelError(SevisError, ValueError):
    """A model name that is neither a sevis model nor a timm model with SE/SGE layers."""


class UnknownLayerError(SevisError, ValueError):
    """Layer names that the model (or saved run) does not have."""


class CheckpointError(SevisError, ValueError):
    """A weights file that cannot be read safely or does not fit the architecture."""


class ImageError(SevisError, ValueError):
    """An upload that is not an image sevis accepts."""


class WeightsUnavailableError(SevisError, OSError):
    """The default pretrained weights could not be fetched; the message names alternatives.

    ``reason`` says briefly why (each source's failure), for interfaces that phrase the
    alternatives in their own terms."""

    reason: str = ""


class ArchiveError(SevisError, ValueError):
    """A zip upload that cannot be read as a whole (single files in it are reported apart)."""


class DataError(SevisError, ValueError):
    """A dataset (folder or zip) that holds no images sevis can read, or is not there."""


class RunError(SevisError, ValueError):
    """A saved run that cannot be read, written, or resumed with the settings given."""
