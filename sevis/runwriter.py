"""Deprecated alias of :mod:`sevis.runs.writer`, kept for one release."""

from ._moved import moved
from .runs.writer import *  # noqa: F403
from .runs.writer import __all__  # noqa: F401

moved(__name__, "sevis.runs.writer")
