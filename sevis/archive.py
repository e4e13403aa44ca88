"""Deprecated alias of :mod:`sevis.data.archive`, kept for one release."""

from ._moved import moved
from .data.archive import *  # noqa: F403
from .data.archive import __all__  # noqa: F401

moved(__name__, "sevis.data.archive")
