"""Deprecated alias of :mod:`sevis.jobs.ray_engine`, kept for one release."""

from ._moved import moved
from .jobs.ray_engine import *  # noqa: F403
from .jobs.ray_engine import __all__  # noqa: F401

moved(__name__, "sevis.jobs.ray_engine")
