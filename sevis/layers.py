"""Deprecated alias of :mod:`sevis.attention.layers`, kept for one release."""

from ._moved import moved
from .attention.layers import *  # noqa: F403
from .attention.layers import __all__  # noqa: F401

moved(__name__, "sevis.attention.layers")
