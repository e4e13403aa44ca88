"""What a session keeps from page to page: its widgets' values and its uploaded files.

Streamlit forgets a widget's value in any run that does not draw it: another page, or the
sidebar drawing another model's weights. Every widget whose value is part of the work (the
model and each model's weights, class labels and their number, the chosen image, layer or
run) is drawn with ``persist_state=KEEP``, which Streamlit keeps for the whole session.

File uploaders have no such option, and cannot be handed their files back: drawn again
after a page change, they are empty. :func:`uploaded_files` keeps what each one held; when
it comes back empty without the person having emptied it, the page goes on with the files
kept and says so, with a button to forget them.

What pages hand each other beyond widgets is read and written here, each under one key:
the models the sidebar loaded for this run (:func:`set_models`, :func:`models`) and its
model choice (:func:`model_choice`), the charts this run drew for Export all
(:func:`new_exports`, :func:`add_export`, :func:`exports`), the images each page offers the
Channels page (:func:`offer_drill`, :func:`drill_sources`) and the channel a click asked it
to open (:class:`Drill`, :func:`ask_drill`, :func:`drill`, :func:`drill_requested`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from sevis.app.text import plain

__all__ = [
    "KEEP",
    "LINKED",
    "MODEL_CHOICE",
    "Drill",
    "add_export",
    "ask_drill",
    "drill",
    "drill_requested",
    "drill_sources",
    "exports",
    "forget_uploads",
    "model_choice",
    "models",
    "new_exports",
    "offer_drill",
    "set_models",
    "uploaded_files",
]

KEEP: Final = "session"
"""``persist_state`` of the widgets whose values outlive a page."""
LINKED: Final = "query-params"
"""``bind`` of the widgets that make a view's link: the model (and the networks of "Several
modules"), each model's weights source and server file, a saved run's server path, the layer,
the classes shown and the two compared; the page is the link's path. Opened in another
browser, the link draws the same view for the sample photographs and server files (uploads
stay with their session)."""

_KEPT = "_kept_uploads"  # uploader key -> the files it last held
_EMPTIED = "_emptied_uploads"  # uploader keys the person changed in this run
_DRILL = "drill"  # the channel the Channels page opens on: {"layer", "channel", "source"}
_GO = "_drill_go"  # a click asked for the Channels page in this run
_SOURCES = "drill_sources"  # name -> (an analysis or a run, its loaded model or None)
_OFFERED = "_drill_pages"  # page -> the names of the sources it offered last
_MODELS = "models"  # the models the sidebar loaded in this run
_EXPORTS = "_exports"  # (name, figure, table maker) of each chart this run drew
MODEL_CHOICE: Final = "model_choice"
"""The key of the sidebar's model radio (SE, SGE or Both)."""


def set_models(loaded: list[Any]) -> None:
    """The models the sidebar loaded for this run (:class:`sevis.app.services.Loaded`)."""
    st.session_state[_MODELS] = list(loaded)


def models() -> list[Any]:
    """The models the sidebar loaded for this run, in its order; none before it has."""
    return list(st.session_state.get(_MODELS, []))


def model_choice() -> str | None:
    """The sidebar's model choice (``"Both"`` or one model's label), None before it is drawn."""
    value = st.session_state.get(MODEL_CHOICE)
    return None if value is None else str(value)


def new_exports() -> None:
    """Start this run's list of charts for Export all (before the page draws)."""
    st.session_state[_EXPORTS] = []


def add_export(name: str, figure: Any, table: Callable[[], Any] | None) -> None:
    """A chart this run drew, with the maker of its table (or None)."""
    st.session_state.setdefault(_EXPORTS, []).append((name, figure, table))


def exports() -> list[tuple[str, Any, Callable[[], Any] | None]]:
    """The charts this run drew so far, in order."""
    return list(st.session_state.get(_EXPORTS, []))


@dataclass(frozen=True)
class Drill:
    """The channel the Channels page opens on: ``layer``, ``channel``, and ``source``, the
    name of the images (one of :func:`drill_sources`, or the page's own saved run); ``classes``,
    the classes to show (a link's; none: the channel's most excited)."""

    layer: str
    channel: int
    source: str
    classes: tuple[str, ...] = ()


def ask_drill(chosen: Drill, *, go: bool = False) -> None:
    """Ask the Channels page to open ``chosen``; with ``go``, the page that drew the chart
    switches to it (:func:`drill_requested`) after the chart (not inside a callback)."""
    st.session_state[_DRILL] = asdict(chosen)
    if go:
        st.session_state[_GO] = True


def drill() -> Drill | None:
    """The channel asked for, if any (a value of the wrong shape counts as none)."""
    value = st.session_state.get(_DRILL)
    if not isinstance(value, Mapping):
        return None
    try:
        classes = tuple(str(c) for c in value.get("classes", ()))
        return Drill(str(value["layer"]), int(value["channel"]), str(value["source"]), classes)
    except (KeyError, TypeError, ValueError):
        return None


def drill_requested() -> bool:
    """Whether a click in this run asked for the Channels page (answered once)."""
    return bool(st.session_state.pop(_GO, False))


def drill_sources() -> dict[str, tuple[Any, Any]]:
    """The images the pages offer the Channels page: name -> (an analysis or a saved run,
    the loaded model that made it, or None for a run)."""
    return dict(st.session_state.get(_SOURCES, {}))


def offer_drill(page: str, sources: Mapping[str, tuple[Any, Any]]) -> None:
    """Offer a page's current images to the Channels page, replacing what the same page
    offered before."""
    offered = st.session_state.setdefault(_OFFERED, {})
    current = {k: v for k, v in drill_sources().items() if k not in offered.get(page, [])}
    st.session_state[_SOURCES] = {**current, **sources}
    offered[page] = list(sources)


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
