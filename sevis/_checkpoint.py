"""Reading weights files users bring, without executing anything inside them.

Formats: PyTorch zip archives and legacy pickles (``.pth``, ``.pth.tar``, ``.pt``,
``.bin``), always through ``torch.load(weights_only=True)``, and ``.safetensors``.
The format is told by the file's first bytes, not its name. Training wrappers
(``{'state_dict': ..., 'optimizer': ...}``) and ``module.`` / ``_orig_mod.`` prefixes
are removed. Loading into a model is strict: every key used, none missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "net")
_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read from ``path`` and the SHA-256 of the file's bytes."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    sha256: str


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path.name}: the file is empty")
    if _is_safetensors(data) or path.name.lower().endswith(".safetensors"):
        obj: object = _safetensors(data, path)
    else:
        obj = _torch_load(data, path)
    return Checkpoint(path, _state_dict_of(obj, path), hashlib.sha256(data).hexdigest())


def _is_safetensors(data: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON header.
    if len(data) < 9:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 0 < n <= len(data) - 8 and data[8:9] == b"{"


def _safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as err:  # SafetensorError and JSON errors alike
        raise CheckpointError(f"{path.name}: corrupt or truncated safetensors file ({err})") from err


def _torch_load(data: bytes, path: Path) -> object:
    is_zip = data[:4] == b"PK\x03\x04"
    is_pickle = data[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(
            f"{path.name}: not a PyTorch or safetensors weights file "
            "(expected .pth, .pth.tar, .pt, .bin or .safetensors)"
        )
    if is_zip:
        # NOTE torch.load does not check the archive's CRCs: flipped bytes inside a
        # tensor would load as silently wrong weights.
        try:
            bad = zipfile.ZipFile(io.BytesIO(data)).testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CheckpointError(f"{path.name}: corrupt or truncated file ({err})") from err
        if bad is not None:
            raise CheckpointError(f"{path.name}: corrupt or truncated file (bad CRC in {bad})")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise CheckpointError(
                f"{path.name}: refused, the file holds pickled Python objects besides "
                "tensors, which could run code when loaded; it was not executed. "
                "Re-save the state dict alone (torch.save(model.state_dict(), ...)) "
                "or use safetensors."
            ) from err
        raise CheckpointError(f"{path.name}: corrupt or truncated file ({err})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path.name}: corrupt or truncated file ({err})") from err


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
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path.name}: no state dict (a mapping of names to tensors) in the file; found {found}")
    assert isinstance(obj, dict)  # _is_state_dict checked it
    state = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``state`` into ``model`` or raise :class:`CheckpointError` saying what differs."""
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
                more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
                parts.append(f"{label}: {', '.join(keys[:_SHOWN])}{more}.")
        raise CheckpointError(" ".join(parts))
    model.load_state_dict(state, strict=True)
