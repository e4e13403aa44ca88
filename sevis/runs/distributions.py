"""A saved run's distributions before and after SGE: counts over all its images.

A run keeps each image's summaries, not its feature maps, so the SGE paper's
distributions (each group's feature norms at every position, before and after SGE) are
counted while the run is made: each part file's schema carries its images' counts
under the key ``sevis.distributions``, and the merged file the sum of its parts' (the
counts of every image in it, whatever was interrupted and resumed). They are kept over
all images, not by class: by class they would be a thousand times larger for ImageNet.

The value is JSON: ``{"bins": 100, "layers": {layer: {name: P}}, "counts": base64}``,
the counts int64, little-endian, zlib-compressed, (P, 100) for each layer and name in
that order. It is read back within bounds (:func:`decode_distributions`).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..attention.kinds import get_kind
from ..errors import RunError, shortened
from ..stats import FINE_BINS
from ._location import Location
from .schema import MAX_METADATA_BYTES, RunMetadata, run_files

__all__ = [
    "DISTRIBUTIONS_KEY",
    "Counts",
    "add_counts",
    "decode_distributions",
    "encode_distributions",
    "read_distributions",
    "with_distributions",
]

DISTRIBUTIONS_KEY = b"sevis.distributions"

Counts = dict[str, dict[str, np.ndarray]]
"""Layer -> name -> (P, 100) int64 counts over some images."""


def add_counts(total: Counts, more: Mapping[str, Mapping[str, np.ndarray]]) -> Counts:
    """``total`` with ``more`` added to it, in place; returns it."""
    for layer, named in more.items():
        for name, counts in named.items():
            kept = total.setdefault(layer, {})
            kept[name] = kept[name] + counts if name in kept else np.asarray(counts, np.int64).copy()
    return total


def encode_distributions(counts: Mapping[str, Mapping[str, np.ndarray]]) -> bytes:
    """The schema metadata value of ``counts`` (see the module's docstring)."""
    layers = {layer: {name: len(c) for name, c in named.items()} for layer, named in counts.items()}
    data = b"".join(np.ascontiguousarray(c, "<i8").tobytes() for named in counts.values() for c in named.values())
    text = base64.b64encode(zlib.compress(data, 6)).decode("ascii")
    return json.dumps({"bins": FINE_BINS, "layers": layers, "counts": text}).encode()


def decode_distributions(raw: bytes, metadata: RunMetadata) -> Counts:
    """The counts ``raw`` holds, checked against the run's metadata: only its layers, P
    their positions (groups), counts non-negative; decompressed to no more than those
    shapes' size.

    Raises:
        RunError: not of the shape sevis writes (the message never echoes it).
    """

    def refused(why: str) -> RunError:
        return RunError(f"its distributions before and after SGE are not of the shape sevis writes ({why})")

    if len(raw) > MAX_METADATA_BYTES:
        raise refused("too large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise refused("not JSON") from None
    if not isinstance(data, dict) or data.get("bins") != FINE_BINS or not isinstance(data.get("counts"), str):
        raise refused("no bins or counts")
    layers = data.get("layers")
    if not isinstance(layers, dict):
        raise refused("no layers")
    kinds = metadata.layer_kinds
    shapes: list[tuple[str, str, int]] = []
    for layer, named in layers.items():
        if layer not in kinds or not isinstance(named, dict):
            raise refused("a layer the run does not have")
        kind = get_kind(kinds[layer])
        positions = metadata.dims.get(layer, {}).get(kind.fields[0])
        for name, size in named.items():
            if not isinstance(name, str) or len(name) > 64 or size != positions:
                raise refused(f"{layer}: not its {kind.index_name}s")
            shapes.append((layer, name, size))
    expected = sum(size for *_, size in shapes) * FINE_BINS * 8
    try:
        packed = base64.b64decode(data["counts"], validate=True)
        inflater = zlib.decompressobj()
        unpacked = inflater.decompress(packed, expected + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise refused("counts not readable") from None
    if len(unpacked) != expected or not inflater.eof:
        raise refused("counts of another size")
    values = np.frombuffer(unpacked, "<i8").astype(np.int64)
    if (values < 0).any():
        raise refused("negative counts")
    out: Counts = {}
    start = 0
    for layer, name, size in shapes:
        out.setdefault(layer, {})[name] = values[start : start + size * FINE_BINS].reshape(size, FINE_BINS)
        start += size * FINE_BINS
    return out


def read_distributions(path: str | Path | Location, metadata: RunMetadata) -> Counts | None:
    """The counts a run file (or a part of one) holds, summed over a run folder's files;
    None where it holds none.

    Raises:
        RunError: they are not of the shape sevis writes, or a folder's file holds none.
    """
    path = Location.of(path)
    if path.is_dir():
        total: Counts = {}
        for part in run_files(path):
            counts = read_distributions(part, metadata)
            if counts is None:
                if metadata.distributions:
                    raise RunError(f"{shortened(part.name)} of {shortened(path.name)} holds no distributions")
                return None
            add_counts(total, counts)
        return total
    raw = (pq.read_schema(path.path, filesystem=path.fs).metadata or {}).get(DISTRIBUTIONS_KEY)
    try:
        return None if raw is None else decode_distributions(raw, metadata)
    except RunError as err:
        raise RunError(f"{shortened(path.name)}: {err}") from None


def with_distributions(schema: pa.Schema, counts: Mapping[str, Mapping[str, np.ndarray]]) -> pa.Schema:
    """``schema`` with ``counts`` in its metadata."""
    return schema.with_metadata({**(schema.metadata or {}), DISTRIBUTIONS_KEY: encode_distributions(counts)})
