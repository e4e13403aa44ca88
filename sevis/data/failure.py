"""What could not be read: one type for every file sevis skips, whoever skipped it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Failure"]


@dataclass(frozen=True)
class Failure:
    """A file that was not analysed, and why, in words for a person."""

    name: str
    reason: str
