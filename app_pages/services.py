"""Cached services the pages share: models, analyses, Grad-CAM, saved runs.

Streamlit-side caching only; everything computed here is computed by :mod:`sevis`.
Models are cached once per server (``st.cache_resource``) and shared by every session;
results are cached by the bytes of their inputs (``st.cache_data``).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image
from torch import nn

import sevis
from sevis.runs import Run, read_run
from sevis.stats import NullBand

ASSETS = Path(__file__).resolve().parent.parent / "assets"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
MAX_VALUE_IMAGES = 8  # keep every image's SGE masks (3.5 MB each) only for small sets
USER_ERRORS = (sevis.SevisError,)
DEFAULT_MODELS = {"SE-ResNet-50": "se_resnet50", "SGE-ResNet-50": "sge_resnet50"}


@st.cache_resource
def load_plugins(modules: str) -> dict[str, str]:
    """Import the comma-separated ``modules`` of ``$SEVIS_PLUGINS`` once per server: they
    register models, attention classes and kinds. Returns module -> error, if any."""
    errors = {}
    for module in filter(None, (m.strip() for m in modules.split(","))):
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001  an operator's module: any failure is reported, not fatal
            errors[module] = f"{type(err).__name__}: {str(err)[:300]}"
    return errors


def dashboard_models() -> dict[str, str]:
    """Menu label -> sevis model name: SE-ResNet-50 and SGE-ResNet-50, or what
    ``$SEVIS_DASHBOARD_MODELS`` lists as ``Label=name,Label=name`` (any name
    :func:`sevis.load_model` knows, a timm id or one a plugin registered); the defaults
    when it lists nothing usable."""
    spec = os.environ.get("SEVIS_DASHBOARD_MODELS", "").strip()
    if not spec:
        return dict(DEFAULT_MODELS)
    pairs = [item.split("=", 1) for item in spec.split(",") if "=" in item]
    models = {label.strip(): name.strip() for label, name in pairs if label.strip() and name.strip()}
    return models or dict(DEFAULT_MODELS)  # nothing usable in it: the defaults


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
        return sevis.model_info(self.model)

    @property
    def provenance(self) -> sevis.Provenance:
        return self.info.provenance

    @cached_property
    def kinds(self) -> list[str]:
        """The kinds of attention the network has, in depth order."""
        return list(dict.fromkeys(layer.kind for layer in sevis.find_attention(self.model)))


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


def upload_path(data: bytes, file_name: str) -> str:
    """Uploaded checkpoints are kept on disk by content, so a cache entry can name them."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "sevis-uploads"
    folder.mkdir(exist_ok=True)
    suffix = ".pth.tar" if file_name.endswith(".pth.tar") else Path(file_name).suffix
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def sample_files() -> list[tuple[str, bytes]]:
    """The sample photographs in ``assets/``, as uploads."""
    return [(p.name, p.read_bytes()) for p in sorted(ASSETS.iterdir()) if p.suffix.lower().lstrip(".") in IMAGE_TYPES]


@st.cache_data(show_spinner=False, max_entries=32)
def _analyse(
    model_key: str,
    files: tuple[tuple[str, bytes], ...],
    labels: tuple[str | None, ...] | None,
    keep_values: bool,
    title: str,
    _model: nn.Module,
) -> sevis.Analysis:
    # NOTE the progress bar is made inside the cached function: Streamlit replays the
    # elements a cached function created, and cannot replay calls on outside ones.
    bar = st.progress(0.0, text=f"{title}: analysing {len(files)} images…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{title}: {done} of {total} images analysed")

    result = sevis.analyse(_model, files, labels, keep_values=keep_values, progress=progress)
    bar.empty()
    return result


def analyse(
    loaded: Loaded,
    files: Sequence[tuple[str, bytes]],
    labels: Sequence[str | None] | None = None,
    keep_values: bool = False,
) -> sevis.Analysis:
    """sevis.analyse with a progress bar, cached by the model and the files' bytes: the
    same inputs never run the model twice."""
    return _analyse(
        loaded.key,
        tuple(files),
        tuple(labels) if labels is not None else None,
        keep_values,
        loaded.label,
        loaded.model,
    )


@st.cache_data(show_spinner="Label permutations for the chance band…", max_entries=16)
def _analysis_nulls(key: str, kind: str, _result: sevis.Analysis) -> dict[str, NullBand]:
    return _result.null_bands(kind)


def analysis_nulls(
    loaded: Loaded, files: Sequence[tuple[str, bytes]], labels: Sequence[str | None], result: sevis.Analysis, kind: str
) -> dict[str, NullBand]:
    """Each layer's class-specificity under label permutations, cached by the model, the
    files' bytes and the labels (as :func:`analyse`)."""
    digest = hashlib.sha256(repr(list(labels)).encode())
    for name, data in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return _analysis_nulls(f"{loaded.key}|{digest.hexdigest()}", kind, result)


def run_nulls(run: Run, kind: str) -> dict[str, NullBand]:
    """The run's chance bands (computed once per run, kept in its cache)."""
    with st.spinner("Label permutations for the chance band…"):
        return run.null_bands(kind)


@st.cache_resource(show_spinner="Reading the run…", max_entries=4)
def _run_at(path: str, size: int, modified: int) -> Run:
    # NOTE a resource, not data: a 1,000-class run's statistics are hundreds of MB, shared
    # read-only by every session instead of unpickled at every rerun. The file's size and
    # time are in the key, so a rewritten run is read again.
    return read_run(path)


@st.cache_data(show_spinner="Reading the run…", max_entries=4)
def _run_upload(data: bytes, name: str) -> Run:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        return read_run(path, cache=False)  # its sample stays in memory for the chance bands


def load_run(data: bytes | None, name: str) -> Run:
    """A run from uploaded bytes (``name`` is the upload's) or from the path ``name``."""
    if data is not None:
        return _run_upload(data, name)
    stat = Path(name).stat()
    return _run_at(str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns)
