"""Deprecated alias of :mod:`sevis.hooks.gradcam`, kept for one release."""

from ._moved import moved
from .hooks.gradcam import *  # noqa: F403
from .hooks.gradcam import __all__  # noqa: F401

moved(__name__, "sevis.hooks.gradcam")
