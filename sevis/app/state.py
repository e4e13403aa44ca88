"""What a session keeps from page to page: its widgets' values and its uploaded files.

Streamlit forgets a widget's value in any run that does not draw it: another page, or the
sidebar drawing another model's weights. Every widget whose value is part of the work (the
model and each model's weights, class labels and their number, the chosen image, layer or
run) is drawn with ``persist_state=KEEP``, which Streamlit keeps for the whole session.

File uploaders have no such option, and cannot be handed their files back: drawn again
after a page change, they are empty. :func:`uploaded_files` keeps what each one held; when
it comes back empty without the person having emptied it, the page goes on with the files
kept and says so, with a button to forget them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from sevis.app.text import plain

__all__ = ["KEEP", "LINKED", "forget_uploads", "uploaded_files"]

KEEP: Final = "session"
"""``persist_state`` of the widgets whose values outlive a page."""
LINKED: Final = "query-params"
"""``bind`` of the widgets that make a view's link: the model, each model's weights source
and server file, a saved run's server path, and the layer shown; the page is the link's
path. Opened in another browser, the link draws the same view for the sample photographs
and server files (uploads stay with their session)."""

_KEPT = "_kept_uploads"  # uploader key -> the files it last held
_EMPTIED = "_emptied_uploads"  # uploader keys the person changed in this run


def _changed(key: str) -> None:
    st.session_state.setdefault(_EMPTIED, set()).add(key)


def uploaded_files(key: str, draw: Callable[..., Any]) -> list[UploadedFile]:
    """The files of the uploader ``draw(key=key, on_change=...)`` draws, or, where it is
    empty because it was not drawn in the last run (a page change), the files it held
    then. An uploader the person empties forgets them.

    Args:
        key: the uploader's widget key.
        draw: draws the uploader with the keyword arguments given (``st.file_uploader``
            with its label and types bound, in any container); it may return one file,
            a list, or None.

    NOTE the files kept are the uploader's own objects, not copies: Streamlit lets go of
    them when the uploader is not drawn, and this reference keeps them for the session.
    """
    value = draw(key=key, on_change=_changed, args=(key,))
    files = value if isinstance(value, list) else ([] if value is None else [value])
    kept: dict[str, list[UploadedFile]] = st.session_state.setdefault(_KEPT, {})
    changed = key in st.session_state.get(_EMPTIED, set())
    st.session_state.get(_EMPTIED, set()).discard(key)
    if files:
        kept[key] = list(files)
        return list(files)
    if changed or key not in kept:
        kept.pop(key, None)
        return []
    shown = ", ".join(plain(f.name, 60) for f in kept[key][:3]) + (" …" if len(kept[key]) > 3 else "")
    note, forget = st.columns([5, 1])
    note.caption(
        f"Still using the {len(kept[key])} file(s) uploaded here before ({shown}); upload others to replace them."
    )
    forget.button("Forget them", key=f"{key}_forget", on_click=forget_uploads, args=(key,))
    return list(kept[key])


def forget_uploads(key: str) -> None:
    """Drop the files kept for uploader ``key``."""
    st.session_state.setdefault(_KEPT, {}).pop(key, None)
