"""Deprecated alias of :mod:`sevis.data.images`, kept for one release."""

from ._moved import moved
from .data.images import *  # noqa: F403
from .data.images import __all__  # noqa: F401

moved(__name__, "sevis.data.images")
