"""Deprecated alias of :mod:`sevis.hooks.knockouts` and :mod:`sevis.jobs.ablation`, kept for one release."""

from ._moved import moved
from .hooks.knockouts import *  # noqa: F403
from .hooks.knockouts import __all__ as _all0
from .jobs.ablation import *  # noqa: F403
from .jobs.ablation import __all__ as _all1
from .models.classes import class_indices

__all__ = [*_all0, *_all1, "class_indices"]

moved(__name__, "sevis.hooks.knockouts, sevis.jobs.ablation and sevis.models.classes")
