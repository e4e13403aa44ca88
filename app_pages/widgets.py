"""Widgets the pages share: the model panel, charts with their exports, messages.

Pages stay thin: they gather widget values, call :mod:`sevis` (through
:mod:`app_pages.services`) and place the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import sevis
from app_pages.services import USER_ERRORS, Loaded, dashboard_models, load_model, upload_path
from sevis import export
from sevis.figures import mark_untrained

SOURCES = {
    "pretrained": "Pretrained (default source)",
    "server": "Checkpoint file on the server",
    "upload": "Upload a checkpoint",
    "untrained": "Untrained (random weights)",
}
WEIGHT_TYPES = ["pth", "tar", "pt", "bin", "safetensors"]


def _weights_widget(label: str, key: str) -> str | None:
    """Sidebar widgets for one model's weights; returns the weights argument or None."""
    source = st.sidebar.selectbox(
        f"{label} weights", list(SOURCES), format_func=SOURCES.__getitem__, key=f"{key}_source"
    )
    if source in ("pretrained", "untrained"):
        return source
    if source == "server":
        files = [str(p) for p in sevis.list_weights_files()]
        choice = st.sidebar.selectbox(
            f"{label}: files in {sevis.weights_dir()}", ["(type a path below)", *files], key=f"{key}_file"
        )
        typed = st.sidebar.text_input(f"{label}: checkpoint path", key=f"{key}_path")
        path = typed.strip() or (choice if choice in files else "")
        return path or None
    upload = st.sidebar.file_uploader(f"{label}: checkpoint file", type=WEIGHT_TYPES, key=f"{key}_upload")
    return upload_path(upload.getvalue(), upload.name) if upload is not None else None


def model_panel() -> list[Loaded]:
    """The sidebar's model choice; loads what is chosen and reports what failed."""
    st.sidebar.header("Model")
    models = dashboard_models()
    choice = st.sidebar.radio(
        "Attention model",
        [*models, "Both"] if len(models) == 2 else list(models),
        key="model_choice",
        help="SE: channel attention (Hu et al. 2018). SGE: spatial attention per channel group (Li et al. 2019).",
    )
    labels = list(models) if choice == "Both" else [choice]
    loaded = []
    for label in labels:
        name = models[label]
        weights = _weights_widget(label, name)
        if weights is None:
            st.sidebar.info(f"{label}: choose a checkpoint file.")
            continue
        try:
            model = load_model(name, weights)
        except USER_ERRORS as err:
            st.sidebar.error(f"{label}: {err}")
            st.error(f"{label} could not be loaded: {err}", icon="⚠️")
            continue
        loaded.append(Loaded(label, name, weights, model))
    for item in loaded:
        if item.info.untrained:
            st.warning(
                f"{item.label} has UNTRAINED (random) weights: what it shows is not the "
                "paper's model. Every figure and export says so.",
                icon="⚠️",
            )
    return loaded


def report_failures(failures: Sequence[sevis.Failure]) -> None:
    if failures:
        st.warning(
            f"{len(failures)} file(s) could not be analysed; the others were:\n\n"
            + "\n".join(f"- **{f.name}**: {f.reason}" for f in failures)
        )


def show_figure(
    fig: go.Figure,
    name: str,
    source: Loaded | sevis.Provenance,
    frame: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    key: str = "",
) -> None:
    """A chart and its exports: PNG and standalone HTML of the figure, CSV and Parquet
    of the numbers behind it, which name the model and weights. Files, and a table
    given as a callable, are made only when a button is clicked."""
    provenance = source.provenance if isinstance(source, Loaded) else source
    if provenance.untrained:
        fig = mark_untrained(fig)
    st.plotly_chart(fig, key=f"chart_{key or name}")

    def table() -> pd.DataFrame:
        assert frame is not None
        return export.with_provenance(frame() if callable(frame) else frame, provenance)

    buttons = [("HTML", f"{name}.html", "text/html", lambda: export.figure_html(fig))]
    if export.png_available():
        buttons.insert(0, ("PNG", f"{name}.png", "image/png", lambda: export.figure_png(fig)))
    if frame is not None:
        buttons += [
            ("CSV", f"{name}.csv", "text/csv", lambda: export.frame_csv(table())),
            ("Parquet", f"{name}.parquet", "application/vnd.apache.parquet", lambda: export.frame_parquet(table())),
        ]
    row = st.container(horizontal=True, gap="small")
    for label, file_name, mime, make in buttons:
        row.download_button(
            label,
            make,
            file_name=file_name,
            mime=mime,
            key=f"dl_{key or name}_{label}",
            on_click="ignore",
            icon=":material/download:",
        )
