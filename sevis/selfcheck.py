"""Deprecated alias of :mod:`sevis.models.selfcheck`, kept for one release."""

from ._moved import moved
from .models.selfcheck import *  # noqa: F403
from .models.selfcheck import __all__  # noqa: F401

moved(__name__, "sevis.models.selfcheck")
