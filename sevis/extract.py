"""Deprecated alias of :mod:`sevis.jobs.extraction`, kept for one release."""

from ._moved import moved
from .jobs.extraction import *  # noqa: F403
from .jobs.extraction import __all__  # noqa: F401

moved(__name__, "sevis.jobs.extraction")
