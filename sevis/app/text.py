"""Text from a user's files, shown as the characters it is."""

from __future__ import annotations

import re

from sevis.errors import shortened

__all__ = ["plain"]

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark, each escapable in Markdown


def plain(text: object, limit: int = 200) -> str:
    """``text`` from a user's file (a name, a label, a message quoting one) for a
    Markdown element, shown as the characters it is: every ASCII punctuation mark
    backslash-escaped (no link, image, emphasis, HTML, colour or maths can form),
    line breaks as spaces, at most ``limit`` characters."""
    text = str(text)
    text = shortened(text, limit)
    text = "".join(c if c.isprintable() else " " for c in text)
    return _PUNCTUATION.sub(r"\\\1", text)
