"""Deprecated alias of :mod:`sevis.jobs.extraction`, kept for one release."""

from ._moved import moved
from .data.files import IMAGE_SUFFIXES, ImageFiles, Item, discover
from .jobs.extraction import *  # noqa: F403
from .jobs.extraction import __all__ as _extraction

__all__ = [*_extraction, "IMAGE_SUFFIXES", "ImageFiles", "Item", "discover"]

moved(__name__, "sevis.jobs.extraction")
