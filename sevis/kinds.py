"""Deprecated alias of :mod:`sevis.attention.kinds`, kept for one release."""

from ._moved import moved
from .attention.kinds import *  # noqa: F403
from .attention.kinds import __all__  # noqa: F401

moved(__name__, "sevis.attention.kinds")
