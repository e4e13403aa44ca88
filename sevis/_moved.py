"""Old module paths kept for one release: each warns once and re-exports its new home."""

from __future__ import annotations

import warnings

__all__ = ["moved"]


def moved(old: str, new: str) -> None:
    """Warn that module ``old`` is now ``new`` (call it from the old module's body)."""
    warnings.warn(
        f"{old} moved to {new}; import from there (or from the package root). The old path goes in the next release.",
        DeprecationWarning,
        stacklevel=3,  # the import statement of whoever imported the old path
    )
