"""Deprecated alias of :mod:`sevis.hooks.forward`, kept for one release."""

from ._moved import moved
from .data.images import load_view
from .hooks.forward import *  # noqa: F403
from .hooks.forward import __all__ as _forward

__all__ = [*_forward, "load_view"]

moved(__name__, "sevis.hooks.forward")
