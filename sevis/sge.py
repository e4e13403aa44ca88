"""Deprecated alias of :mod:`sevis.attention.sge`, kept for one release."""

from ._moved import moved
from .attention.sge import *  # noqa: F403
from .attention.sge import __all__  # noqa: F401

moved(__name__, "sevis.attention.sge")
