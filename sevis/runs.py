"""The saved-run format: one Parquet row per image, statistics rebuilt on reading.

Columns:

* ``path`` (string): the image's path inside the dataset folder or zip;
* ``label`` (string): the folder's name, or the predicted class for a flat folder;
* ``label_source`` (string): ``"folder"`` or ``"predicted"``;
* ``top5_classes`` (list<string>) and ``top5_probs`` (list<float32>);
* per attention layer, one column per summary field of its kind (see
  :mod:`sevis.kinds`), fixed_size_list<float32>[D]: SE layers one column named by the
  layer (``SE_4_6``, the excitation vector), SGE layers two (``SGE_4_6_mean``,
  ``SGE_4_6_var``: each group's mask mean and spatial variance).

The schema's metadata key ``sevis`` holds :class:`RunMetadata` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RunError, UnknownLayerError
from .kinds import get_kind
from .pipeline import BatchResult
from .provenance import Provenance
from .stats import ClassStats, NullBand, StatsByKind, specificity_nulls

__all__ = ["METADATA_KEY", "Run", "RunMetadata", "batch_table", "null_bands", "read_rows", "read_run", "run_schema"]

METADATA_KEY = b"sevis"


@dataclass
class RunMetadata:
    """What a saved run records about how it was made (the schema's ``sevis`` key).

    Attributes:
        model, weights, weights_sha256, untrained: the :class:`Provenance`.
        sevis_version: the version that wrote the run.
        data_config: the preprocessing (input size, interpolation, crop_pct, mean, std).
        attention: kind name -> its layers kept, in depth order.
        dims: layer -> field -> vector length D.
        source: the dataset folder or zip.
        labels: ``"folder"`` or ``"predicted"``.
        per_class, seed: the per-class sample asked for, if any.
        layers: the layers asked for (None: all).
        images: rows written; failures: ``{"path", "reason"}`` of each unreadable file.
    """

    model: str
    weights: str
    weights_sha256: str | None
    untrained: bool
    sevis_version: str
    data_config: dict[str, Any]
    attention: dict[str, list[str]]
    dims: dict[str, dict[str, int]]
    source: str
    labels: str
    per_class: int | None = None
    seed: int = 0
    layers: list[str] | None = None
    images: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    OUTCOMES = ("images", "failures")
    """Fields that record what happened, not how the run was set up."""

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.model, self.weights, self.untrained, self.weights_sha256)

    def fields_of(self, layer: str) -> list[str]:
        """The summary fields the run keeps for ``layer`` (runs of sevis 0.1 record no
        ``dims``: their kind's base fields)."""
        if layer in self.dims:
            return list(self.dims[layer])
        return list(get_kind(self.layer_kinds[layer]).fields)

    @property
    def layer_kinds(self) -> dict[str, str]:
        """Layer -> kind name, in depth order within each kind."""
        return {layer: kind for kind, layers in self.attention.items() for layer in layers}

    def settings(self) -> dict[str, Any]:
        """Everything that changes a row, as JSON values (for comparing two runs)."""
        data = dataclasses.asdict(self)
        return json.loads(json.dumps({k: v for k, v in data.items() if k not in self.OUTCOMES}))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunMetadata:
        """Read the JSON back, also as written by sevis 0.1 (``se_layers``/``sge_layers``)."""
        data = json.loads(text)
        if "attention" not in data:  # sevis 0.1
            se, sge = data.pop("se_layers", []), data.pop("sge_layers", [])
            data["attention"] = {k: v for k, v in (("se", se), ("sge", sge)) if v}
            data["dims"] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def run_schema(metadata: RunMetadata) -> pa.Schema:
    """The Parquet schema of a run: the fixed columns, then each layer's fields."""
    fields = [
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("label_source", pa.string()),
        pa.field("top5_classes", pa.list_(pa.string())),
        pa.field("top5_probs", pa.list_(pa.float32())),
    ]
    for layer, kind_name in metadata.layer_kinds.items():
        kind = get_kind(kind_name)
        for name, size in metadata.dims[layer].items():
            fields.append(pa.field(kind.column(layer, name), pa.list_(pa.float32(), size)))
    return pa.schema(fields, metadata={METADATA_KEY: metadata.to_json()})


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def batch_table(
    schema: pa.Schema,
    paths: Sequence[str],
    labels: Sequence[str | None],
    batch: BatchResult,
) -> pa.Table:
    """The rows of one batch; a ``None`` label becomes the predicted class."""
    columns: dict[str, pa.Array] = {
        "path": pa.array(list(paths), pa.string()),
        "label": pa.array(
            [given if given is not None else top for given, top in zip(labels, batch.predicted, strict=True)],
            pa.string(),
        ),
        "label_source": pa.array(["folder" if given is not None else "predicted" for given in labels], pa.string()),
        "top5_classes": pa.array(batch.top_classes, pa.list_(pa.string())),
        "top5_probs": _fixed(batch.top_probs).cast(pa.list_(pa.float32())),
    }
    for layer, kind_name in batch.kinds.items():
        kind = get_kind(kind_name)
        for name, values in batch.summaries[layer].items():
            columns[kind.column(layer, name)] = _fixed(values)
    return pa.Table.from_pydict(columns, schema=schema)


def dims_of(batch: BatchResult) -> dict[str, dict[str, int]]:
    """Layer -> field -> D of a batch (what :class:`RunMetadata` records)."""
    return {layer: {name: int(np.prod(v.shape[1:])) for name, v in s.items()} for layer, s in batch.summaries.items()}


@dataclass
class Run(StatsByKind):
    """A saved run, read back: its metadata and the statistics of its images."""

    path: Path
    metadata: RunMetadata
    stats: dict[str, ClassStats] = field(default_factory=dict)

    @property
    def provenance(self) -> Provenance:
        return self.metadata.provenance

    @property
    def failures(self) -> list[dict[str, str]]:
        return self.metadata.failures


def read_metadata(path: str | Path) -> RunMetadata:
    """The metadata of a run, from its schema alone.

    Raises:
        RunError: not a Parquet file written by ``sevis extract``.
    """
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise RunError(f"{path.name}: not a readable Parquet file ({err})") from None
    if not schema.metadata or METADATA_KEY not in schema.metadata:
        raise RunError(f"{path.name}: not a run written by `sevis extract` (no sevis metadata)")
    try:
        return RunMetadata.from_json(schema.metadata[METADATA_KEY])
    except (ValueError, TypeError) as err:
        raise RunError(f"{path.name}: its sevis metadata cannot be read ({type(err).__name__})") from None


def _batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=1024, columns=columns)


def read_run(path: str | Path, layers: Sequence[str] | None = None) -> Run:
    """Read a run and rebuild its per-class statistics, a record batch at a time.

    Args:
        layers: the layers to read (default all); others are skipped unread.

    Raises:
        RunError: not a Parquet file written by ``sevis extract``.
        UnknownLayerError: none of ``layers`` is in the run.
    """
    path = Path(path)
    metadata = read_metadata(path)
    run = Run(path, metadata)
    kept = {k: v for k, v in metadata.layer_kinds.items() if layers is None or k in layers}
    if layers is not None and not kept:
        raise UnknownLayerError(
            f"none of the layers {list(layers)} is in {path.name}; it has {list(metadata.layer_kinds)}"
        )
    columns = {
        (layer, name): get_kind(kind).column(layer, name)
        for layer, kind in kept.items()
        for name in metadata.fields_of(layer)
    }
    for batch in _batches(path, ["label", *columns.values()]):
        labels = batch.column("label").to_pylist()
        for layer, kind_name in kept.items():
            kind = get_kind(kind_name)
            summaries = {name: _matrix(batch.column(columns[layer, name])) for name in metadata.fields_of(layer)}
            if kind_name not in run.stats:
                run.stats[kind_name] = kind.new_stats()
            histogram = kind.histogram_from_summaries(summaries)
            run.stats[kind_name].add({layer: summaries}, labels, None if histogram is None else {layer: histogram})
    return run


def read_rows(
    path: str | Path, kind: str, *, max_rows: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per layer of ``kind``, its first summary field for at most ``max_rows`` images of the
    run (a uniform sample, the same for the same ``seed``), (N, D), and their labels."""
    path = Path(path)
    metadata = read_metadata(path)
    spec = get_kind(kind)
    layers = metadata.attention.get(kind, [])
    columns = ["label", *(spec.column(layer, spec.fields[0]) for layer in layers)]
    file = pq.ParquetFile(path)
    total = file.metadata.num_rows
    pick = np.arange(total)
    if total > max_rows:
        pick = np.sort(np.random.default_rng(seed).choice(total, max_rows, replace=False))
    # NOTE a record batch at a time, keeping only the sampled rows: a 50,000-image run is
    # gigabytes, the sample a few megabytes.
    kept: list[pa.RecordBatch] = []
    start = 0
    for batch in file.iter_batches(batch_size=1024, columns=columns):
        inside = pick[(pick >= start) & (pick < start + batch.num_rows)] - start
        if len(inside):
            kept.append(batch.take(pa.array(inside)))
        start += batch.num_rows
    table = pa.Table.from_batches(kept) if kept else file.schema_arrow.empty_table().select(columns)
    rows = {layer: _matrix(table.column(spec.column(layer, spec.fields[0]))) for layer in layers}
    return rows, table.column("label").to_pylist()


def null_bands(
    path: str | Path, kind: str = "se", *, max_rows: int = 2000, permutations: int = 200, seed: int = 0
) -> dict[str, NullBand]:
    """Each layer's class-specificity under label permutations, from a sample of at most
    ``max_rows`` of the run's images (see :func:`sevis.stats.specificity_null`)."""
    rows, labels = read_rows(path, kind, max_rows=max_rows, seed=seed)
    return specificity_nulls(rows, labels, permutations=permutations, seed=seed)


def _matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
