"""Reading weights files users bring, without executing anything inside them, and
within bounded time and memory.

Formats: PyTorch zip archives and legacy pickles (``.pth``, ``.pth.tar``, ``.pt``,
``.bin``), always through ``torch.load(weights_only=True)``, and ``.safetensors``.
The format is told by the file's first bytes, not its name. Training wrappers
(``{'state_dict': ..., 'optimizer': ...}``) and ``module.`` / ``_orig_mod.`` prefixes
are removed. Loading into a model is strict: every key used, none missing, every
tensor of a type the architecture uses, every value finite.

``weights_only`` stops code from running, not a file from costing: a 1 KB pickle of
tuples that hold one another twice, 60 deep, is 2**60 objects to print or hash, and a
storage may claim terabytes. So the pickle is walked first, opcode by opcode
(:func:`_scan`), against :class:`~sevis.limits.Limits`: opcodes, nesting depth,
objects once shared references are unfolded, tensors, and the bytes they claim, which
must be in the file. Nothing from the file is ever printed: messages give types and
counts. :func:`read_checkpoint_isolated` reads in a worker process with its own
memory and time limits, so even a file that gets past these checks costs the worker,
not the process that asked (the dashboard's server).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .._files import FileRefused, opened_within
from ..data._zipcheck import ZipLimitError
from ..errors import CheckpointError, shortened
from ..limits import Limits
from ._pickle_scan import _MB, _REAL, _check_archive, _check_legacy, _Refused

__all__ = []


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "net")


_PREFIXES = ("module.", "_orig_mod.")


_SHOWN = 5


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read from ``path`` and the SHA-256 of the file's bytes."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    sha256: str


def read_checkpoint(
    path: str | os.PathLike[str], limits: Limits | None = None, *, within: Sequence[str] | None = None
) -> Checkpoint:
    """The state dict in the weights file ``path``, read in this process.

    Args:
        within: folders the file must lie in, checked on the file as opened (a link
            swapped in after a check by name is caught); None: any file.

    Raises:
        CheckpointError: the file is missing, outside ``within``, not a regular file,
            too large, unsafe, corrupt, beyond ``limits`` (:meth:`Limits.from_env` when
            None), or holds no state dict.
    """
    limits = limits or Limits.from_env()
    path = Path(path)
    if within is None:
        return _read_checkpoint(path, path, limits)
    try:
        with opened_within(path, within) as source:
            return _read_checkpoint(path, source, limits)
    except FileRefused as err:
        raise CheckpointError(f"weights file {_bounded(path.name)}: {err}; not read") from None


def _read_checkpoint(path: Path, source: Path, limits: Limits) -> Checkpoint:
    """Read ``source`` (``path`` itself, or the file ``path`` was opened as); messages
    name ``path``."""
    _checked_size(path, limits, source)
    data = source.read_bytes()
    if _is_safetensors(data) or path.name.lower().endswith(".safetensors"):
        obj: object = _safetensors(data, path, limits)
    else:
        obj = _torch_load(data, path, limits)
    state = _state_dict_of(obj, path)
    _check_real(state, path)
    _check_expansion(state, path, limits)
    return Checkpoint(path, state, hashlib.sha256(data).hexdigest())


def read_checkpoint_isolated(
    path: str | os.PathLike[str], limits: Limits | None = None, *, within: Sequence[str] | None = None
) -> Checkpoint:
    """:func:`read_checkpoint` in a worker process with at most ``limits.parse_memory_bytes``
    of data and ``limits.parse_seconds`` of time: a file that gets past every check and
    still explodes costs that worker, not this process. The tensors come back as a
    safetensors file (no pickle crosses back); the SHA-256 is of the file the worker read.

    Raises:
        CheckpointError: as :func:`read_checkpoint` (``within`` is checked by the worker,
            on the file it opens), or the worker ran out of time or memory.
    """
    limits = limits or Limits.from_env()
    path = Path(path)
    if within is None:
        _checked_size(path, limits)  # early, for a plain message; the worker checks what it opens
    name = _bounded(path.name)
    with tempfile.TemporaryDirectory(prefix="sevis-parse-") as folder:
        out = Path(folder) / "state.safetensors"
        command = [sys.executable, "-c", "from sevis.models._checkpoint import _worker; _worker()", str(path), str(out)]
        try:
            done = subprocess.run(
                [*command, json.dumps(asdict(limits)), json.dumps(None if within is None else list(map(str, within)))],
                capture_output=True,
                timeout=limits.parse_seconds,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CheckpointError(
                f"{name}: refused, reading it took longer than {limits.parse_seconds:g} s (SEVIS_PARSE_TIMEOUT_S)"
            ) from None
        answer = _answer(done.stdout)
        if answer is None:
            raise CheckpointError(
                f"{name}: refused, the worker reading it stopped (exit {done.returncode}) within its limits of "
                f"{limits.parse_memory_bytes / _MB:,.0f} MB (SEVIS_PARSE_MEMORY_MB) and "
                f"{limits.parse_seconds:g} s (SEVIS_PARSE_TIMEOUT_S)"
            )
        if "error" in answer:
            raise CheckpointError(str(answer["error"])[:2000])
        from safetensors.torch import load_file

        return Checkpoint(path, load_file(out), str(answer["sha256"]))


def _answer(stdout: bytes) -> dict[str, object] | None:
    """The worker's JSON answer: its last line of output."""
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _worker() -> None:
    """``python -c 'from sevis.models._checkpoint import _worker; _worker()' CHECKPOINT OUT LIMITS``:
    limit this process, read CHECKPOINT, write its state dict to OUT as safetensors, and
    print one JSON line: ``{"sha256": ...}`` or ``{"error": message}``."""
    path, out, limits_json, within_json = sys.argv[1:5]
    limits = Limits(**json.loads(limits_json))
    within = json.loads(within_json)
    # NOTE set here, not through subprocess's preexec_fn, which is unsafe in a threaded
    # parent such as a Streamlit server. torch is imported already: the limit counts it.
    resource.setrlimit(resource.RLIMIT_DATA, (limits.parse_memory_bytes, limits.parse_memory_bytes))
    seconds = int(limits.parse_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
    os.nice(limits.parse_nice)  # behind the server and its other sessions when the CPU is contended
    answer: dict[str, str]
    try:
        checkpoint = read_checkpoint(path, limits, within=within)
        _save_safetensors(checkpoint.state_dict, Path(out))
        answer = {"sha256": checkpoint.sha256}
    except CheckpointError as err:
        answer = {"error": str(err)}
    except MemoryError:
        answer = {
            "error": f"{_bounded(Path(path).name)}: refused, reading it needs more than "
            f"{limits.parse_memory_bytes / _MB:,.0f} MB of memory (SEVIS_PARSE_MEMORY_MB)"
        }
    except OSError as err:  # the temporary folder's disk
        answer = {"error": f"the weights could not be handed over on this server ({err.strerror or err})"}
    print(json.dumps(answer), flush=True)


def _save_safetensors(state: dict[str, torch.Tensor], out: Path) -> None:
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors = {}
    for key, tensor in state.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage()
        # safetensors refuses tensors that share memory; views and shared storages are copied
        if storage.data_ptr() in seen or not tensor.is_contiguous() or storage.nbytes() != tensor.nbytes:
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(storage.data_ptr())
        tensors[key] = tensor
    save_file(tensors, str(out))


def _checked_size(path: Path, limits: Limits, source: Path | None = None) -> None:
    """The file ``source`` (default ``path``) is a regular file within the size limit;
    messages name ``path``."""
    source = source or path
    if not source.is_file():
        raise CheckpointError(f"weights file {_bounded(str(path))} does not exist")
    size = source.stat().st_size
    if size == 0:
        raise CheckpointError(f"{_bounded(path.name)}: the file is empty")
    if size > limits.checkpoint_bytes:
        raise CheckpointError(
            f"{_bounded(path.name)}: {size / _MB:,.0f} MB, more than the limit of "
            f"{limits.checkpoint_bytes / _MB:,.0f} MB for a weights file (SEVIS_MAX_CHECKPOINT_MB); not read"
        )


def _bounded(text: str, limit: int = 80) -> str:
    """``text`` for a message: at most ``limit`` characters, unprintable ones as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in shortened(text, limit))


def _is_safetensors(data: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON header.
    if len(data) < 9:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 0 < n <= len(data) - 8 and data[8:9] == b"{"


_SAFETENSORS_HEADER_BYTES = 100 * _MB  # safetensors' own bound on its JSON header


def _safetensors(data: bytes, path: Path, limits: Limits) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, its header counted before it is parsed: each
    tensor is a JSON object of its own, whose opening brace no escape can hide, so the
    braces bound the tensors JSON parsing and loading would build (a 23 MB header can
    name 400,000 empty tensors)."""
    from safetensors.torch import load

    (length,) = struct.unpack("<Q", data[:8]) if len(data) >= 8 else (0,)
    if length > _SAFETENSORS_HEADER_BYTES:
        raise CheckpointError(f"{_bounded(path.name)}: refused, its safetensors header is {length / _MB:,.0f} MB")
    header = data[8 : 8 + length]
    # the header is an object of objects: the tensors and, if named, one "__metadata__"
    declared = header.count(b"{") - 1 - (b'"__metadata__"' in header)
    if declared > limits.tensors:
        raise CheckpointError(
            f"{_bounded(path.name)}: refused, it holds {declared:,} tensors, more than the limit of {limits.tensors:,}"
        )
    try:
        return load(data)
    except Exception as err:  # SafetensorError and JSON errors alike
        raise CheckpointError(f"{path.name}: corrupt or truncated safetensors file ({str(err)[:200]})") from err


def _torch_load(data: bytes, path: Path, limits: Limits) -> object:
    is_zip = data[:4] == b"PK\x03\x04"
    is_pickle = data[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"{path.name}: not a PyTorch or safetensors weights file "
            "(expected .pth, .pth.tar, .pt, .bin or .safetensors)"
        )
    try:
        if is_zip:
            _check_archive(data, limits)
        else:
            _check_legacy(data, limits)
    except _Refused as err:
        raise CheckpointError(f"{path.name}: refused, {err}; nothing in it was loaded") from None
    except (zipfile.BadZipFile, ZipLimitError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path.name}: corrupt or truncated file ({str(err)[:200]})") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise CheckpointError(
                f"{path.name}: refused, the file holds pickled Python objects besides "
                "tensors, which could run code when loaded; it was not executed. "
                "Re-save the state dict alone (torch.save(model.state_dict(), ...)) "
                "or use safetensors."
            ) from None
        raise CheckpointError(f"{path.name}: corrupt or truncated file ({str(err)[:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, json.JSONDecodeError) as err:
        if "can't allocate memory" in str(err):
            raise CheckpointError(
                f"{path.name}: refused, reading it needs more memory than this process may use"
            ) from None
        raise CheckpointError(f"{path.name}: corrupt or truncated file ({str(err)[:200]})") from None


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _state_dict_of(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not _is_state_dict(obj) and isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        raise CheckpointError(
            f"{_bounded(path.name)}: no state dict (a mapping of names to tensors) in the file; found {_describe(obj)}"
        )
    assert isinstance(obj, dict)  # _is_state_dict checked it
    state = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _describe(obj: object) -> str:
    """What ``obj`` is, in a bounded number of words: types and counts, and string keys
    cut short. NOTE never str() or repr() of the file's objects: a value can unfold
    into more objects than there is memory (see :class:`~sevis.limits.Limits`)."""
    if not isinstance(obj, dict):
        count = f" of {len(obj):,} items" if isinstance(obj, (list, tuple)) else ""
        return f"a {type(obj).__name__}{count}"
    keys = [k for k in obj if isinstance(k, str)]
    shown = ", ".join(_bounded(k, 40) for k in sorted(keys[:1000])[:_SHOWN])
    others = Counter(type(k).__name__ for k in obj if not isinstance(k, str))
    parts = [f"{len(keys):,} text keys ({shown}{', …' if len(keys) > _SHOWN else ''})"] if keys else []
    parts += [f"{n:,} {name} keys" for name, n in others.most_common(3)]
    return f"a dict with {' and '.join(parts) or 'no keys'}"


def _check_real(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors of types no network here uses (complex, quantized, float8, ...)."""
    odd = [(k, v.dtype) for k, v in state.items() if v.dtype not in _REAL or v.layout != torch.strided]
    if odd:
        key, dtype = odd[0]
        raise CheckpointError(
            f"{_bounded(path.name)}: refused, {len(odd)} tensors are of a type these networks do not use "
            f"(first: {_bounded(key, 60)} is {str(dtype).removeprefix('torch.')}"
            f"{'' if odd[0][1] in _REAL else ', not real numbers' if odd[0][1].is_complex else ''})"
        )


def _check_expansion(state: dict[str, torch.Tensor], path: Path, limits: Limits) -> None:
    """Refuse tensors that would become more than their file holds, before any is copied:
    a view may repeat its storage (stride 0: one float stored, a billion read), so each
    tensor may hold no more elements than its storage, and all of them together no more
    than ``limits.checkpoint_bytes``."""
    total = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > tensor.untyped_storage().nbytes():
            raise CheckpointError(
                f"{_bounded(path.name)}: refused, tensor {_bounded(key, 60)} is a view that repeats its storage "
                f"({tensor.numel():,} values read from {tensor.untyped_storage().nbytes():,} bytes); "
                "nothing in it was loaded"
            )
        total += nbytes
        if total > limits.checkpoint_bytes:
            raise CheckpointError(
                f"{_bounded(path.name)}: refused, its tensors hold more than {limits.checkpoint_bytes / _MB:,.0f} MB "
                "(SEVIS_MAX_CHECKPOINT_MB) once views are counted; nothing in it was loaded"
            )


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``state`` into ``model`` or raise :class:`CheckpointError` saying what differs:
    keys, shapes, tensor types (a bool or integer tensor where the network has floats
    would give NaN everywhere), values that are not finite."""
    source = shortened(source)
    expected = model.state_dict()
    # NOTE BatchNorm fills in a missing num_batches_tracked itself (checkpoints older
    # than PyTorch 0.4.1, such as the SENet authors' converted Caffe weights, lack it).
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        parts = [
            (
                f"{source} does not fit {arch}: {len(missing)} keys missing, "
                f"{len(unexpected)} unexpected, {len(reshaped)} of another shape."
            )
        ]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)):
            if keys:
                parts.append(f"{label}: {_listed(keys)}.")
        raise CheckpointError(" ".join(parts))
    retyped = [
        f"{k} is {_dtype(state[k].dtype)} where {arch} has {_dtype(v.dtype)}"
        for k, v in expected.items()
        if k in state and not _same_kind(state[k].dtype, v.dtype)
    ]
    if retyped:
        raise CheckpointError(
            f"{source}: refused, {len(retyped)} tensors of a type {arch} does not use: {_listed(retyped)}."
        )
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(
            f"{source}: refused, {len(nonfinite)} tensors hold NaN or infinite values ({_listed(nonfinite)}); "
            "the network would answer NaN for every image."
        )
    model.load_state_dict(state, strict=True)


def _listed(items: list[str]) -> str:
    """The first few of ``items``, each cut short, and how many more."""
    shown = ", ".join(shortened(i, 100) for i in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _same_kind(found: torch.dtype, wanted: torch.dtype) -> bool:
    """Floats for floats (half and double are converted exactly enough), integers for
    integers, bools for bools."""
    if wanted.is_floating_point:
        return found.is_floating_point
    if wanted == torch.bool or found == torch.bool:
        return found == wanted
    return not found.is_floating_point and not found.is_complex
