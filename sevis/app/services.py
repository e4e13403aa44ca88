"""Cached services the pages share: models, analyses, Grad-CAM, saved runs.

Streamlit-side caching only; everything computed here is computed by :mod:`sevis`.
Models are cached once per server (``st.cache_resource``) and shared by every session;
results are cached by the bytes of their inputs (``st.cache_data``).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import hashlib
import importlib
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePath

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image
from torch import nn

import sevis
from sevis._files import FileRefused, opened_within
from sevis._threads import torch_threads
from sevis.data import assets_dir
from sevis.errors import shortened
from sevis.figures import mark_untrained
from sevis.jobs.importance import layer_knockout_effects
from sevis.models.weights import cached_weights
from sevis.runs.reader import Run, read_run
from sevis.stats.measures import NullBand

__all__ = [
    "BAND_WAIT_S",
    "DEFAULT_MODELS",
    "DEFAULT_MODULES",
    "IMAGE_CACHE_ENTRIES",
    "IMAGE_TYPES",
    "MAX_MODULES",
    "MAX_VALUE_IMAGES",
    "USER_ERRORS",
    "Loaded",
    "ServerFileError",
    "UploadError",
    "Weights",
    "ablation_of",
    "analyse",
    "analysis_nulls",
    "channel_effect",
    "channel_view_of",
    "dashboard_models",
    "dashboard_modules",
    "excitation_map_of",
    "grad_cam",
    "images_key",
    "importance_of",
    "kept_upload",
    "load_model",
    "load_plugins",
    "load_run",
    "open_model",
    "retry_fetch",
    "run_nulls",
    "run_slot",
    "run_slots",
    "sample_files",
    "server_file",
    "server_folders",
    "session_threads",
    "shared_figure",
    "unique_names",
    "untrained_twin",
    "upload_digest",
    "upload_folder",
]


IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
MAX_VALUE_IMAGES = 8  # keep every image's SGE masks (3.5 MB each) only for small sets
USER_ERRORS = (sevis.SevisError,)
DEFAULT_MODELS = {"SE-ResNet-50": "se_resnet50", "SGE-ResNet-50": "sge_resnet50"}
DEFAULT_MODULES: dict[str, dict[str, str]] = {  # family -> menu label -> sevis model name
    "SE": {
        "SE-ResNet-50 (SENet authors)": "se_resnet50",
        "SE-ResNet-50 (timm A1 recipe)": "seresnet50.a1_in1k",
        "SE-ResNet-50 (timm A2 recipe)": "seresnet50.a2_in1k",
        "SE-ResNet-50 (timm A3 recipe)": "seresnet50.a3_in1k",
        "SE-ResNet-50 (timm RandAugment recipe)": "seresnet50.ra2_in1k",
    },
    "SGE": {"SGE-ResNet-50 (PytorchInsight)": "sge_resnet50"},
    "CBAM": {"CBAM-ResNet-50 (PytorchInsight)": "cbam_resnet50"},
    "BAM": {"BAM-ResNet-50 (PytorchInsight)": "bam_resnet50"},
    "SK": {
        "SK-ResNet-50 (PytorchInsight)": "sk_resnet50",
        "SK-ResNeXt-50 32x4d (timm)": "skresnext50_32x4d.ra_in1k",
        "SK-ResNet-34 (timm)": "skresnet34.ra_in1k",
        "SK-ResNet-18 (timm)": "skresnet18.ra_in1k",
    },
    "ECA": {"ECA-ResNet-50-D (timm)": "ecaresnet50d.miil_in1k", "ECA-ResNet-50-T (timm)": "ecaresnet50t.ra2_in1k"},
    "GC": {"GC-ResNet-50-T (timm)": "gcresnet50t.ra2_in1k"},
    "ResNeSt": {
        "ResNeSt-50-D (authors)": "resnest50d.in1k",
        "ResNeSt-26-D (GluonCV)": "resnest26d.gluon_in1k",
        "ResNeSt-14-D (GluonCV)": "resnest14d.gluon_in1k",
    },
}
"""The networks the "Several modules" choice offers, by family: SGE and the modules it is
compared with (PytorchInsight's one-recipe ResNet-50s; timm's), and SE in five trainings."""
MAX_MODULES = 6
"""Networks loaded at once by "Several modules" (six ResNet-50s: about 0.7 GB)."""


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


def dashboard_modules() -> dict[str, dict[str, str]]:
    """Family -> menu label -> sevis model name, for "Several modules": :data:`DEFAULT_MODULES`,
    or what ``$SEVIS_DASHBOARD_MODULES`` lists as ``Family:Label=name,...``."""
    spec = os.environ.get("SEVIS_DASHBOARD_MODULES", "").strip()
    families: dict[str, dict[str, str]] = {}
    for item in spec.split(","):
        family, _, rest = item.partition(":")
        label, _, name = rest.partition("=")
        if family.strip() and label.strip() and name.strip():
            families.setdefault(family.strip(), {})[label.strip()] = name.strip()
    return families or {family: dict(members) for family, members in DEFAULT_MODULES.items()}


@dataclass(frozen=True)
class Loaded:
    """A model ready for the pages, and the arguments it was loaded with."""

    label: str
    name: str
    weights: str
    model: nn.Module
    slot: str = ""

    @property
    def key(self) -> str:
        """Names the model in caches."""
        return f"{self.name}|{self.weights}"

    @property
    def ident(self) -> str:
        """Names the model in widget keys and file names: its name, or for a second
        checkpoint of the same network, its slot (``se_resnet50_b``)."""
        return self.slot or self.name

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
    """A model with the default pretrained weights or untrained ones."""
    return sevis.load_model(name, weights)


@st.cache_resource
def _fetch_failures() -> dict[str, sevis.WeightsUnavailableError]:
    return {}


def _pretrained(name: str) -> nn.Module:
    """``name`` with its pretrained weights, or the error of the last failed fetch: a
    network that cannot be fetched is tried once per server, not at every rerun (offline,
    timm's hub retries cost about 50 s a time), until :func:`retry_fetch` or until its
    file is put in the weights folder."""
    failures = _fetch_failures()
    failed = failures.get(name)
    if failed is not None and cached_weights(name) is None:
        raise failed
    try:
        model = load_model(name, "pretrained")
    except sevis.WeightsUnavailableError as err:
        failures[name] = err
        raise
    failures.pop(name, None)
    return model


def retry_fetch(name: str) -> None:
    """Forget that ``name``'s pretrained weights could not be fetched: the next rerun tries again."""
    _fetch_failures().pop(name, None)


SHARED_FIGURES = 128
"""Figures the server keeps built for every session (:func:`shared_figure`)."""


@st.cache_resource(show_spinner=False, max_entries=SHARED_FIGURES)
def _shared_figure(key: str, untrained: bool, _build: Callable[[], go.Figure]) -> go.Figure:
    fig = _build()
    return mark_untrained(fig) if untrained else fig


def shared_figure(
    loaded: Loaded, what: str, data: Sequence[np.ndarray | str], build: Callable[[], go.Figure]
) -> go.Figure:
    """The figure ``build`` makes, built once per server for the same model, ``what`` and
    ``data`` (the arrays and names it draws: hashed, not compared) and shared by every
    session, read-only (stamped untrained when it is: :func:`sevis.figures.mark_untrained`
    leaves a stamped figure as it is). Building Plotly figures was three quarters of a
    session's first page (0.6 of 0.84 s on the loaded 2-core machine)."""
    digest = hashlib.sha256(f"{loaded.key}\0{what}".encode())
    for part in data:
        digest.update(part.encode() if isinstance(part, str) else np.ascontiguousarray(part).tobytes())
        digest.update(b"\0")
    return _shared_figure(digest.hexdigest(), loaded.provenance.untrained, build)


def untrained_twin(loaded: Loaded) -> Loaded:
    """The same architecture with sevis's fixed-seed untrained weights: the baseline for
    what training put into the attention (the same images through it)."""
    return Loaded(f"{loaded.label}, untrained", loaded.name, "untrained", load_model(loaded.name, "untrained"))


@st.cache_resource
def _run_slots(count: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(count)


def run_slots() -> int:
    """How many sessions may draw at once: ``$SEVIS_MAX_CONCURRENT_RUNS``, default the
    machine's cores (at least 2); 0 lifts the bound."""
    text = os.environ.get("SEVIS_MAX_CONCURRENT_RUNS", "").strip()
    try:
        return int(text) if text else max(2, os.cpu_count() or 2)
    except ValueError:
        return max(2, os.cpu_count() or 2)


class _Drawing:
    """How many sessions are inside :func:`run_slot` now."""

    lock = threading.Lock()
    count = 0


def session_threads(others_drawing: bool) -> int:
    """Torch's threads for one session's page: ``$SEVIS_SESSION_THREADS`` if set (0: torch's
    own); else torch's own (the cores) while the session draws alone on a machine with cores
    to spare, and 1 while other sessions draw too or the machine's load (its one-minute
    average of runnable processes) is at its cores or above."""
    text = os.environ.get("SEVIS_SESSION_THREADS", "").strip()
    if text.isdecimal() and len(text) < 4:
        return int(text) or torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = others_drawing or (hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores)
    return 1 if busy else torch.get_num_threads()


@contextlib.contextmanager
def run_slot() -> Iterator[None]:
    """The block runs in one of :func:`run_slots` server-wide slots. A session that
    finds none free waits in its own thread, using no CPU and not the interpreter's
    lock, so the server's event loop (the health endpoint, every other session's
    messages) keeps answering while a burst of sessions opens; 40 sessions at once had
    it stall for seconds.

    A session that enters while others draw, or with the machine loaded to its cores, runs
    its torch ops on one thread (:func:`session_threads`): each op's team of as many threads as cores waits at every
    op's end for its slowest thread, and with other work on the cores one of them is
    often descheduled. On the 2-core machine with two CPU-bound processes beside it, one
    SE-ResNet-50 forward of 4 images took 0.65 s on two threads and 0.49 s on one
    (0.15 and 0.30 s alone); the Channels page's knock-out table 3.2-5.8 s and 1.4-2.2 s
    (BENCHMARKS.md, 2b)."""
    count = run_slots()
    if count <= 0:
        with _drawing():
            yield
        return
    slots = _run_slots(count)
    if not slots.acquire(blocking=False):
        with st.spinner("Other sessions are drawing; this page is next…"):
            slots.acquire()
    try:
        with _drawing():
            yield
    finally:
        slots.release()


@contextlib.contextmanager
def _drawing() -> Iterator[None]:
    with _Drawing.lock:
        others = _Drawing.count
        _Drawing.count += 1
    try:
        threads = session_threads(others > 0)
        with contextlib.nullcontext() if threads == torch.get_num_threads() else torch_threads(threads):
            yield
    finally:
        with _Drawing.lock:
            _Drawing.count -= 1


class ServerFileError(sevis.SevisError, ValueError):
    """A path on the server the dashboard will not open."""


class UploadError(sevis.SevisError, OSError):
    """An upload that could not be kept on the server's disk to be read."""


@dataclass(frozen=True)
class Weights:
    """The weights chosen in the model panel.

    Attributes:
        source: ``"pretrained"``, ``"untrained"``, ``"server"`` or ``"upload"``.
        value: the weights argument: the source's name, the path typed or picked, or
            the uploaded file's SHA-256.
        shown_as: how messages name it: the upload's own file name, the path typed.
        data: an upload's bytes (not copied: Streamlit's buffer).
    """

    source: str
    value: str
    shown_as: str = ""
    data: memoryview | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """Names the weights in caches."""
        return f"upload:{self.value}" if self.source == "upload" else self.value


def open_model(name: str, weights: Weights) -> nn.Module:
    """The model ``name`` with ``weights``: files (uploads and server paths) are read in a
    worker process with the limits of :class:`sevis.limits.Limits`, once per content.

    Raises:
        SevisError: anything about the weights, said in the user's terms.
    """
    if weights.source == "pretrained":
        return _pretrained(name)
    if weights.source == "untrained":
        return load_model(name, weights.value)
    if weights.source == "server":
        path = server_file(weights.value)
        stat = path.stat()
        loaded = _load_file(name, str(path), stat.st_size, stat.st_mtime_ns, tuple(map(str, server_folders())))
    else:
        assert weights.data is not None  # an upload carries its bytes
        loaded = _load_upload(name, weights.value, weights.shown_as, weights.data)
    if isinstance(loaded, str):
        raise sevis.CheckpointError(loaded)
    return loaded


# NOTE a failure is cached as its message: a bad file is read once, not at every rerun.
@st.cache_resource(show_spinner="Reading the checkpoint (once per server)…", max_entries=6)
def _load_file(name: str, path: str, size: int, modified: int, within: tuple[str, ...]) -> nn.Module | str:
    try:
        return sevis.load_model(name, path, isolate=True, within=within)
    except sevis.SevisError as err:
        return str(err)


@st.cache_resource(show_spinner="Reading the uploaded checkpoint (once per server)…", max_entries=6)
def _load_upload(name: str, digest: str, file_name: str, _data: memoryview) -> nn.Module | str:
    try:
        with kept_upload(_data, file_name, digest) as path:
            model = sevis.load_model(name, path, isolate=True)
    except UploadError:
        raise  # the disk, not the file: not cached, the next try may succeed
    except sevis.SevisError as err:
        return str(err)
    info = sevis.model_info(model)
    if info.weights_sha256 != digest:
        return f"{file_name}: the copy read on the server differs from the upload (a disk error?); upload it again"
    # NOTE the copy is gone once read: results and exports name the user's file
    sevis.set_model_info(model, dataclasses.replace(info, weights=f"uploaded {file_name}"))
    return model


def upload_digest(data: memoryview) -> str:
    """SHA-256 of an upload's bytes."""
    return hashlib.sha256(data).hexdigest()


def upload_folder() -> Path:
    """This server's private folder for uploads being read (``$SEVIS_UPLOAD_DIR``, default
    the system's temporary folder): created ``0700``, emptied as each upload is read."""
    return _upload_folder(os.environ.get("SEVIS_UPLOAD_DIR") or tempfile.gettempdir())


@st.cache_resource
def _upload_folder(parent: str) -> Path:
    Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="sevis-uploads-", dir=parent))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@contextlib.contextmanager
def kept_upload(data: memoryview | bytes, file_name: str, digest: str) -> Iterator[Path]:
    """The upload on disk for the block, under its own (cleaned) file name, then removed.
    Written under a temporary name and renamed when whole, so no reader sees a partial
    file; the worker that reads it reports its SHA-256, which the caller compares.

    Raises:
        UploadError: the disk refused (full, read-only): nothing is left behind.
    """
    folder = Path(tempfile.mkdtemp(dir=upload_folder()))
    try:
        path = folder / _clean_name(file_name)
        part = folder / ".part"
        try:
            with open(part, "wb") as f:
                f.write(data)
            os.replace(part, path)
        except OSError as err:
            raise UploadError(
                f"{_clean_name(file_name)} could not be kept on the server to be read "
                f"({err.strerror or type(err).__name__}); nothing of it was kept"
            ) from None
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _clean_name(file_name: str) -> str:
    """An upload's file name without folders or odd characters, at most 100 long."""
    name = re.sub(r"[^\w.\- ]", "_", PurePath(file_name.replace("\\", "/")).name).lstrip(".")
    return name[-100:] or "checkpoint"


def server_folders() -> list[Path]:
    """The folders whose files the dashboard opens by path: the weights folder and those
    ``$SEVIS_SERVER_DIRS`` lists (separated by ``os.pathsep``; unset: the folder the
    server was started in)."""
    listed = os.environ.get("SEVIS_SERVER_DIRS")
    extra = [p for p in listed.split(os.pathsep) if p.strip()] if listed is not None else [os.getcwd()]
    folders = [sevis.weights_dir(), *map(Path, extra)]
    return list(dict.fromkeys(p.expanduser().resolve() for p in folders))


def server_file(typed: str) -> Path:
    """The file ``typed`` names inside :func:`server_folders` (a relative name is looked
    up in each): opened once and checked as opened (a regular file, its real path inside
    a folder), so a FIFO, a device or a link swapped in is refused, not followed. The
    readers check the file they open against the folders again (``within=``).

    Raises:
        ServerFileError: outside every folder, with one message whether or not such a
            file exists; or inside one but not a regular file there; or a name that is
            no path (a NUL byte, too long).
    """
    text = typed.strip()
    shown = repr(shortened(text))
    folders = server_folders()
    if "\0" in text or len(text) > 4096 or any(len(part) > 255 for part in text.split("/")):
        raise ServerFileError(f"{shown}: not a path the dashboard opens")
    inside = []
    for folder in folders:
        candidate = folder / text
        try:
            with opened_within(candidate, folders) as _:
                return candidate.resolve()
        except FileRefused as err:
            if str(err) != "outside the folders allowed" and _named_inside(candidate, folder):
                inside.append((folder, str(err)))
    if inside:
        folder, reason = inside[0]
        raise ServerFileError(f"no file {shown} in {folder}" if reason == "no such file" else f"{shown}: {reason}")
    raise ServerFileError(
        f"{shown}: the dashboard opens files on the server only inside "
        + ", ".join(str(f) for f in folders)
        + "; put the file there, or ask the operator to list its folder in SEVIS_SERVER_DIRS"
    )


def _named_inside(candidate: Path, folder: Path) -> bool:
    """Whether ``candidate`` names something inside ``folder`` (for the message only:
    outside, absent and refused files get one message)."""
    try:
        return candidate.resolve().is_relative_to(folder)
    except (OSError, RuntimeError, ValueError):
        return False


@st.cache_resource(max_entries=6)
def _gradcam_copy(key: str, _model: nn.Module) -> tuple[nn.Module, threading.Lock]:
    # captum hooks the model while it runs; a private copy under a lock keeps those
    # hooks away from other sessions' forward passes on the shared model.
    return copy.deepcopy(_model), threading.Lock()


@st.cache_data(show_spinner="Grad-CAM…", max_entries=64)
def grad_cam(model_key: str, view: np.ndarray, target: int | None, _loaded: Loaded) -> tuple[np.ndarray, int]:
    """Grad-CAM of one model view for ``target`` (None: predicted class), cached."""
    from sevis.hooks.gradcam import grad_cam as compute

    model, lock = _gradcam_copy(model_key, _loaded.model)
    x = sevis.normalise(_loaded.info.data_config, [Image.fromarray(view)])
    with lock:
        return compute(model, x, target)


def unique_names(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The files with names made unique for display and choice: a browser gives only a base
    name, so two ``photo.jpg`` from two folders become ``photo.jpg`` and ``photo.jpg (2)``."""
    taken: set[str] = set()
    out = []
    for name, data in files:
        shown, n = name, 1
        while shown in taken:  # also past a file really named "photo.jpg (2)"
            n += 1
            shown = f"{name} ({n})"
        taken.add(shown)
        out.append((shown, data))
    return out


def sample_files() -> list[tuple[str, bytes]]:
    """The sample photographs (``assets/``, or ``sevis/assets`` in the wheel), as uploads;
    none when they are not installed."""
    folder = assets_dir()
    if folder is None:
        return []
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.suffix.lower().lstrip(".") in IMAGE_TYPES]


IMAGE_CACHE_ENTRIES = 1024
"""Images whose analysis the server keeps (per model and file content; those with SGE masks
kept count eight times: 3.5 MB each; with SGE's distributions four times: see :func:`_weight`)."""


@st.cache_resource
def _image_cache() -> tuple[OrderedDict[tuple[str, str, bool, bool], sevis.Analysis], threading.Lock]:
    return OrderedDict(), threading.Lock()


def _cached_parts(loaded: Loaded, digests: Sequence[str], what: tuple[bool, bool]) -> dict[str, sevis.Analysis]:
    cache, lock = _image_cache()
    with lock:
        found = {}
        for digest in digests:
            part = cache.get((loaded.key, digest, *what))
            if part is not None:
                cache.move_to_end((loaded.key, digest, *what))
                found[digest] = part
        return found


def _weight(key: tuple[str, str, bool, bool]) -> int:
    """An image's share of :data:`IMAGE_CACHE_ENTRIES`: 8 with its values (SGE masks,
    3.5 MB), 4 with its SGE distributions (1.6 MB), else 1."""
    return 8 if key[2] else 4 if key[3] else 1


def _keep_parts(loaded: Loaded, parts: dict[str, sevis.Analysis], what: tuple[bool, bool]) -> None:
    cache, lock = _image_cache()
    with lock:
        for digest, part in parts.items():
            cache[(loaded.key, digest, *what)] = part
        weight = sum(_weight(key) for key in cache)
        while cache and weight > IMAGE_CACHE_ENTRIES:
            key, _ = cache.popitem(last=False)
            weight -= _weight(key)


def analyse(
    loaded: Loaded,
    files: Sequence[tuple[str, bytes]],
    labels: Sequence[str | None] | None = None,
    keep_values: bool = False,
    distributions: bool = False,
) -> sevis.Analysis:
    """sevis.analyse with a progress bar, each file analysed once per server: results are kept
    per model and file content, and labels applied afterwards (:meth:`sevis.Analysis.relabel`),
    so a new upload costs a forward pass of the new files only, and renaming a class none.
    ``distributions``: with SGE's before/after distributions (asked for by a toggle)."""
    if not files:
        return sevis.Analysis(loaded.provenance)
    digests = tuple(hashlib.sha256(data).hexdigest() for _, data in files)
    names = tuple(name for name, _ in files)
    given = tuple(labels) if labels is not None else (None,) * len(files)
    return _assembled(loaded.key, digests, names, given, (keep_values, distributions), loaded, files)


# NOTE a resource: the assembled analysis is shared read-only, not unpickled at every rerun
@st.cache_resource(show_spinner=False, max_entries=32)
def _assembled(
    model_key: str,
    digests: tuple[str, ...],
    names: tuple[str, ...],
    given: tuple[str | None, ...],
    what: tuple[bool, bool],
    _loaded: Loaded,
    _files: Sequence[tuple[str, bytes]],
) -> sevis.Analysis:
    loaded, files = _loaded, _files
    keep_values, distributions = what
    found = _cached_parts(loaded, digests, what)
    todo = {d: data for d, (_, data) in zip(digests, files, strict=True) if d not in found}
    if todo:
        bar = st.progress(0.0, text=f"{loaded.label}: analysing {len(todo)} images…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"{loaded.label}: {done} of {total} images analysed")

        # NOTE named and labelled by their digests: each image its own class, its part of the
        # statistics kept apart, and a failure found again by its file
        fresh = sevis.analyse(
            loaded.model,
            list(todo.items()),
            list(todo),
            keep_values=keep_values,
            distributions=distributions,
            progress=progress,
        )
        bar.empty()
        new = {p.images[0].name: p for p in fresh.parts()}
        new.update({f.name: sevis.Analysis(fresh.provenance, failures=[f]) for f in fresh.failures})
        _keep_parts(loaded, new, what)
        found.update(new)
    parts = []
    for i, ((name, _), digest) in enumerate(zip(files, digests, strict=True)):
        part = found[digest]
        if part.failures:
            parts.append(sevis.Analysis(part.provenance, failures=[dataclasses.replace(part.failures[0], name=name)]))
            continue
        own = str(i)  # the same photograph twice stays two images
        image = dataclasses.replace(part.images[0], name=name, label=own)
        stats = {kind: s.regroup({digest: own}) for kind, s in part.stats.items()}
        parts.append(sevis.Analysis(part.provenance, [image], [], stats))
    whole = sevis.Analysis.combine(parts)
    readable = [label for label, part in zip(given, (found[d] for d in digests), strict=True) if not part.failures]
    return whole.relabel(readable)


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


def run_nulls(run: Run, kind: str) -> dict[str, NullBand] | None:
    """The run's chance bands (computed once per run, in the background, kept in its
    cache); None while they are being computed (a large run's take a minute or two:
    the page draws without them and polls, see ``classes.depth_figures``)."""
    future = run.prefetch_null_bands(kind)
    with _WAITED_LOCK:
        # a run read again for its bands takes minutes: no wait at all for it
        wait = 0.0 if future in _WAITED or kind not in run.samples else BAND_WAIT_S
        _WAITED.add(future)
    try:
        return future.result(timeout=wait)
    except TimeoutError:
        return None


BAND_WAIT_S = 3.0
"""Seconds a page waits, once, for a run's chance bands before drawing without them (a run
of a few thousand images has them by then); later reruns and polls do not wait."""


_WAITED: weakref.WeakSet[Future[dict[str, NullBand]]] = weakref.WeakSet()
_WAITED_LOCK = threading.Lock()


@st.cache_resource(show_spinner="Reading the run…", max_entries=4)
def _run_at(path: str, size: int, modified: int, within: tuple[str, ...]) -> Run:
    # NOTE a resource, not data: a 1,000-class run's statistics are hundreds of MB, shared
    # read-only by every session instead of unpickled at every rerun. The file's size and
    # time are in the key, so a rewritten run is read again.
    # NOTE the bands start when the depth curve asks for them, after the page's other figures
    # are drawn: a large run's take minutes, and would slow those figures down
    return read_run(path, within=within)


# NOTE an uploaded run is kept for other reruns of its session, four at most and an hour at
# most: a closed session's upload does not stay in the server's memory for good.
@st.cache_data(show_spinner="Reading the run…", max_entries=4, ttl=3600)
def _run_upload(data: bytes, name: str) -> Run:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        run = read_run(path, cache=False)
        for kind, stats in run.stats.items():  # while the file exists: it is not read again
            if stats.layers and len(stats.classes) > 1:
                run.null_bands(kind)
        return run


def load_run(data: bytes | None, name: str) -> Run:
    """A run from uploaded bytes (``name`` is the upload's) or from the path ``name``."""
    if data is not None:
        return _run_upload(data, name)
    stat = Path(name).stat()
    return _run_at(str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns, tuple(map(str, server_folders())))


def images_key(data: sevis.Analysis | Run) -> str:
    """Names a set of images in caches: a run by its file (path, size, time), an analysis
    by the content of the views it analysed and their labels."""
    digest = hashlib.sha256()
    if isinstance(data, Run):
        path = data.path
        assert isinstance(path, Path), "the dashboard opens runs from its own folders, never a URI"
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        digest.update(
            data.provenance.model.encode() + (data.provenance.weights_sha256 or data.provenance.weights).encode()
        )
        for image in data.images:
            digest.update(image.name.encode() + b"\0" + image.label.encode() + b"\0" + image.view.tobytes())
    return digest.hexdigest()


@st.cache_data(show_spinner="Reading the channel…", max_entries=32)
def _channel_view(key: str, layer: str, channel: int, _data: sevis.Analysis | Run) -> sevis.ChannelView:
    return sevis.channel_view(_data, layer, channel)


def channel_view_of(data: sevis.Analysis | Run, key: str, layer: str, channel: int) -> sevis.ChannelView:
    """:func:`sevis.channel_view`, cached by the images (``key``: :func:`images_key`), the layer
    and the channel (a 50,000-image run's layer is read once, not at every rerun)."""
    return _channel_view(key, layer, channel, data)


@st.cache_data(show_spinner="Placing the images…", max_entries=32)
def _excitation_map(key: str, layer: str, _data: sevis.Analysis | Run) -> sevis.ExcitationMap:
    return sevis.excitation_map(_data, layer)


def excitation_map_of(data: sevis.Analysis | Run, key: str, layer: str) -> sevis.ExcitationMap:
    """:func:`sevis.excitation_map`, cached by the images (``key``: :func:`images_key`) and the layer."""
    return _excitation_map(key, layer, data)


def _batch(loaded: Loaded, views: Sequence[np.ndarray]) -> torch.Tensor:
    return sevis.normalise(loaded.info.data_config, [Image.fromarray(v) for v in views])


@st.cache_data(show_spinner="Knocking the channel out…", max_entries=64)
def _channel_effect(
    key: str, layer: str, channel: int, names: tuple[str, ...], _loaded: Loaded, _views: list[np.ndarray]
) -> pd.DataFrame:
    knocked = {f"{value:g}": sevis.Channels({channel: value}) for value in (0.0, 1.0)}
    # one plain pass for both; each knock-out runs only the network after the layer
    effects = layer_knockout_effects(_loaded.model, _batch(_loaded, _views), layer, knocked)
    columns = {}
    for value, effect in effects.items():
        columns[f"p change at {value}"] = effect.p_change.to_numpy()
        columns[f"top-1 changed at {value}"] = effect.top1_changed.to_numpy()
    return pd.DataFrame({"image": names, "top-1 class": effects["0"].target, **columns})


def channel_effect(
    loaded: Loaded, layer: str, channel: int, names: tuple[str, ...], views: list[np.ndarray]
) -> pd.DataFrame:
    """Per image, the change in its top-1 class's probability with ``layer``'s ``channel``
    forced to 0 and to 1 (:func:`sevis.knockout_effect`), cached by the model, the channel
    and the images' content."""
    digest = hashlib.sha256(b"".join(v.tobytes() for v in views)).hexdigest()
    return _channel_effect(f"{loaded.key}|{digest}", layer, channel, names, loaded, views)


@st.cache_data(show_spinner="Knocking each stage out…", max_entries=16)
def _ablation(key: str, targets: tuple[int, ...], _loaded: Loaded, _views: list[np.ndarray]) -> pd.DataFrame:
    return sevis.ablate(_loaded.model, [(_batch(_loaded, _views), list(targets))]).table


IMPORTANCE_KEPT = 8
"""Importance tables a session keeps (a table of 2,048 channels is about 100 KB)."""
IMPORTANCE_STATE = "_importance_kept"  # the session's importance tables, read and written here only


def importance_of(
    loaded: Loaded,
    analysis: sevis.Analysis,
    key: str,
    layer: str,
    channels: Sequence[int],
    targets: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """:func:`sevis.channel_importance` of ``channels`` of ``layer`` over an analysis's
    images (labelled by their own labels, scored on ``targets``): the table and the rank
    correlation. Kept for the session by the model, the images (``key``: :func:`images_key`)
    and the choices, the last :data:`IMPORTANCE_KEPT`; ``progress`` is called while it is
    computed. (Not ``st.cache_data``: a cached function may not draw the page's progress bar.)"""
    kept: OrderedDict = st.session_state.setdefault(IMPORTANCE_STATE, OrderedDict())
    labels = [str(r.label) for r in analysis.images]
    wanted = (loaded.key, key, layer, tuple(int(c) for c in channels), tuple(int(t) for t in targets), tuple(labels))
    if wanted in kept:
        kept.move_to_end(wanted)
        return kept[wanted]
    batch = [(_batch(loaded, [r.view for r in analysis.images]), list(wanted[4]), labels)]
    result = sevis.channel_importance(loaded.model, batch, layer, list(wanted[3]), progress=progress)
    kept[wanted] = (result.table, result.correlation())
    while len(kept) > IMPORTANCE_KEPT:
        kept.popitem(last=False)
    return kept[wanted]


def ablation_of(loaded: Loaded, analysis: sevis.Analysis, key: str, targets: Sequence[int]) -> pd.DataFrame:
    """:func:`sevis.ablate` over an analysis's images, cached by the model and the images
    (``key``: :func:`images_key`)."""
    return _ablation(f"{loaded.key}|{key}", tuple(int(t) for t in targets), loaded, [r.view for r in analysis.images])
