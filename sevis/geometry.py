"""Deprecated alias of :mod:`sevis.attention.geometry`, kept for one release."""

from ._moved import moved
from .attention.geometry import *  # noqa: F403
from .attention.geometry import __all__  # noqa: F401

moved(__name__, "sevis.attention.geometry")
