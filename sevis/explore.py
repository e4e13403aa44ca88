"""Deprecated alias of :mod:`sevis.analysis.explore`, kept for one release."""

from ._moved import moved
from .analysis.explore import *  # noqa: F403
from .analysis.explore import __all__  # noqa: F401

moved(__name__, "sevis.analysis.explore")
