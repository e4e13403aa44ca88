"""What every page shares: the model panel, cached loading and analysis, exports.

Pages stay thin: they gather widget values, call :mod:`sevis` and place the results.
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from torch import nn

import sevis
from sevis import export
from sevis.figures import mark_untrained

ASSETS = Path(__file__).resolve().parent.parent / "assets"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
WEIGHT_TYPES = ["pth", "tar", "pt", "bin", "safetensors"]
MODELS = {"SE-ResNet-50": "se_resnet50", "SGE-ResNet-50": "sge_resnet50"}
SOURCES = {
    "pretrained": "Pretrained (default source)",
    "server": "Checkpoint file on the server",
    "upload": "Upload a checkpoint",
    "untrained": "Untrained (random weights)",
}
MAX_MASK_IMAGES = 8  # keep every image's SGE masks (3.5 MB each) only for small sets
USER_ERRORS = (sevis.CheckpointError, sevis.WeightsUnavailableError, sevis.UnknownModelError)


@dataclass(frozen=True)
class Loaded:
    """A model ready for the pages, and the arguments it was loaded with."""

    label: str
    name: str
    weights: str
    model: nn.Module

    @property
    def key(self) -> str:
        """Names the model in caches."""
        return f"{self.name}|{self.weights}"

    @property
    def info(self) -> sevis.ModelInfo:
        return self.model.sevis_info

    @property
    def provenance(self) -> export.Provenance:
        return export.Provenance(self.info.name, self.info.weights, self.info.untrained)

    @cached_property
    def kind(self) -> str:
        """"sge" for a network with SGE layers, else "se"."""
        return "sge" if any(layer.kind == "sge" for layer in sevis.find_attention(self.model)) else "se"


# NOTE one model per (name, weights) for the whole server: every session shares it.
# Sharing is safe: forward passes in eval mode do not change the model, and
# sevis.capture records only its own thread's forward passes.
@st.cache_resource(show_spinner="Loading the model (once per server)…", max_entries=6)
def load_model(name: str, weights: str) -> nn.Module:
    return sevis.load_model(name, weights)


@st.cache_resource(max_entries=6)
def _gradcam_copy(name: str, weights: str) -> tuple[nn.Module, threading.Lock]:
    # captum hooks the model while it runs; a private copy under a lock keeps those
    # hooks away from other sessions' forward passes on the shared model.
    return copy.deepcopy(load_model(name, weights)), threading.Lock()


@st.cache_data(show_spinner="Grad-CAM…", max_entries=64)
def grad_cam(model_key: str, view: np.ndarray, target: int | None, _loaded: Loaded) -> tuple[np.ndarray, int]:
    """Grad-CAM of one model view for ``target`` (None: predicted class), cached."""
    from sevis.gradcam import grad_cam as compute

    model, lock = _gradcam_copy(_loaded.name, _loaded.weights)
    x = sevis.normalise(_loaded.info.data_config, [Image.fromarray(view)])
    with lock:
        return compute(model, x, target)


def _upload_path(data: bytes, file_name: str) -> str:
    """Uploaded checkpoints are kept on disk by content, so a cache entry can name them."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "sevis-uploads"
    folder.mkdir(exist_ok=True)
    suffix = ".pth.tar" if file_name.endswith(".pth.tar") else Path(file_name).suffix
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def _weights_widget(label: str, key: str) -> str | None:
    """Sidebar widgets for one model's weights; returns the weights argument or None."""
    source = st.sidebar.selectbox(
        f"{label} weights", list(SOURCES), format_func=SOURCES.get, key=f"{key}_source"
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
    return _upload_path(upload.getvalue(), upload.name) if upload is not None else None


def model_panel() -> list[Loaded]:
    """The sidebar's model choice; loads what is chosen and reports what failed."""
    st.sidebar.header("Model")
    choice = st.sidebar.radio(
        "Attention model", [*MODELS, "Both"], key="model_choice",
        help="SE: channel attention (Hu et al. 2018). SGE: spatial attention per channel group (Li et al. 2019).",
    )
    labels = list(MODELS) if choice == "Both" else [choice]
    loaded = []
    for label in labels:
        name = MODELS[label]
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
                "paper's model. Every figure and export says so.", icon="⚠️"
            )
    return loaded


def sample_files() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(ASSETS.iterdir()) if p.suffix.lower().lstrip(".") in IMAGE_TYPES]


@st.cache_data(show_spinner=False, max_entries=32)
def _analyse(
    model_key: str,
    files: tuple[tuple[str, bytes], ...],
    labels: tuple[str | None, ...] | None,
    keep_masks: bool,
    title: str,
    _model: nn.Module,
) -> sevis.Analysis:
    # NOTE the progress bar is made inside the cached function: Streamlit replays the
    # elements a cached function created, and cannot replay calls on outside ones.
    bar = st.progress(0.0, text=f"{title}: analysing {len(files)} images…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{title}: {done} of {total} images analysed")

    result = sevis.analyse(_model, files, labels, keep_masks=keep_masks, progress=progress)
    bar.empty()
    return result


def analyse(
    loaded: Loaded, files: Sequence[tuple[str, bytes]], labels: Sequence[str | None] | None = None,
    keep_masks: bool = False,
) -> sevis.Analysis:
    """sevis.analyse with a progress bar, cached by the model and the files' bytes: the
    same inputs never run the model twice."""
    return _analyse(
        loaded.key, tuple(files), tuple(labels) if labels is not None else None, keep_masks,
        loaded.label, loaded.model,
    )


def report_failures(failures: Sequence[sevis.Failure]) -> None:
    if failures:
        st.warning(
            f"{len(failures)} file(s) could not be analysed; the others were:\n\n"
            + "\n".join(f"- **{f.name}**: {f.reason}" for f in failures)
        )


def show_figure(
    fig: go.Figure,
    name: str,
    source: Loaded | export.Provenance,
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
            label, make, file_name=file_name, mime=mime, key=f"dl_{key or name}_{label}",
            on_click="ignore", icon=":material/download:",
        )


def top_frame(image: sevis.ImageResult) -> pd.DataFrame:
    return pd.DataFrame({"image": image.name, "rank": range(1, len(image.top_classes) + 1),
                         "class": image.top_classes, "probability": image.top_probs})


def grid_frame(values: np.ndarray, column: str) -> pd.DataFrame:
    """A 2-D map as a long table: y, x, value."""
    y, x = np.indices(values.shape)
    return pd.DataFrame({"y": y.ravel(), "x": x.ravel(), column: values.ravel()})
