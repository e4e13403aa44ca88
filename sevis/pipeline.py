"""Deprecated alias of :mod:`sevis.hooks.forward`, kept for one release."""

from ._moved import moved
from .hooks.forward import *  # noqa: F403
from .hooks.forward import __all__  # noqa: F401

moved(__name__, "sevis.hooks.forward")
