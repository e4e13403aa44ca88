"""The saved-run format: one Parquet row per image, statistics rebuilt on reading.

Columns:

* ``path`` (string): the image's path inside the dataset folder or zip;
* ``label`` (string): the folder's name, or the predicted class for a flat folder;
* ``label_source`` (string): ``"folder"`` or ``"predicted"``;
* ``top5_classes`` (list<string>) and ``top5_probs`` (list<float32>);
* per attention layer, one column per summary field of its kind (see
  :mod:`sevis.attention.kinds`), fixed_size_list<float32>[D]: SE layers one column named by the
  layer (``SE_4_6``, the excitation vector), SGE layers two (``SGE_4_6_mean``,
  ``SGE_4_6_var``: each group's mask mean and spatial variance).

The schema's metadata key ``sevis`` holds :class:`RunMetadata` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..attention.kinds import get_kind
from ..errors import RunError
from ..hooks.forward import BatchResult
from ..provenance import UNTRAINED_SEED, Provenance

__all__ = [
    "METADATA_KEY",
    "RunMetadata",
    "batch_table",
    "column_matrix",
    "dims_of",
    "open_run_file",
    "read_metadata",
    "run_schema",
    "writer_options",
]


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
        self_check: the weights' self-check on photographs (``SelfCheck.to_dict()``), or
            None where it does not apply.
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
    self_check: dict[str, Any] | None = None

    OUTCOMES = ("images", "failures", "self_check")
    """Fields that record what happened, not how the run was set up (the self-check
    follows from the weights, whose SHA-256 is compared)."""

    @property
    def provenance(self) -> Provenance:
        seeded = self.untrained and not self.sevis_version.startswith("0.1")  # 0.1 did not seed them
        return Provenance(
            self.model, self.weights, self.untrained, self.weights_sha256, UNTRAINED_SEED if seeded else None
        )

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


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Parquet options for a run's files: the text columns dictionary-encoded and
    compressed, the attention vectors neither. NOTE float vectors hardly compress; their
    dictionary attempt and snappy pass made files 15 % larger and slower to read."""
    text = [f.name for f in schema if not pa.types.is_fixed_size_list(f.type)]
    return {
        "use_dictionary": text,
        "compression": {f.name: "snappy" if f.name in text else "none" for f in schema},
    }


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


def open_run_file(path: Path) -> pq.ParquetFile:
    """A run's Parquet file, opened to be read one row group at a time."""
    # NOTE pre_buffer=False: with it, iter_batches reads ahead the whole file (3.5 GB of
    # arrow memory for a 50,000-image run); without, one row group at a time.
    return pq.ParquetFile(path, pre_buffer=False)


def column_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column of D values per row as an (N, D) array (no copy where
    Arrow allows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
