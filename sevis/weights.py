"""Deprecated alias of :mod:`sevis.models.weights`, kept for one release."""

from ._moved import moved
from .models.weights import *  # noqa: F403
from .models.weights import __all__  # noqa: F401

moved(__name__, "sevis.models.weights")
