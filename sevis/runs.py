"""The saved-run format: one Parquet row per image, statistics rebuilt on reading.

Columns:

* ``path`` (string): the image's path inside the dataset folder or zip;
* ``label`` (string): the folder's name, or the predicted class for a flat folder;
* ``label_source`` (string): ``"folder"`` or ``"predicted"``;
* ``top5_classes`` (list<string>) and ``top5_probs`` (list<float32>);
* one ``SE_s_b`` column per SE layer: the excitation vector, fixed_size_list<float32>[C];
* two columns per SGE layer, ``SGE_s_b_mean`` and ``SGE_s_b_var``: each group's mask mean
  and spatial variance, fixed_size_list<float32>[G].

The schema's metadata key ``sevis`` holds JSON: model, weights, weights_sha256,
untrained, sevis_version, data_config (the preprocessing), layers, source, images,
and the files that failed with their reasons.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .export import Provenance
from .stats import ExcitationStats, MaskStats

__all__ = ["METADATA_KEY", "Run", "batch_table", "read_run", "run_schema"]

METADATA_KEY = b"sevis"


def run_schema(se_layers: Mapping[str, int], sge_layers: Mapping[str, int], metadata: dict[str, Any]) -> pa.Schema:
    """Schema of a run: ``se_layers`` and ``sge_layers`` map layer names to C and G."""
    fields = [
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("label_source", pa.string()),
        pa.field("top5_classes", pa.list_(pa.string())),
        pa.field("top5_probs", pa.list_(pa.float32())),
    ]
    fields += [pa.field(name, pa.list_(pa.float32(), c)) for name, c in se_layers.items()]
    for name, g in sge_layers.items():
        fields += [pa.field(f"{name}_mean", pa.list_(pa.float32(), g)), pa.field(f"{name}_var", pa.list_(pa.float32(), g))]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def batch_table(
    schema: pa.Schema,
    paths: Sequence[str],
    labels: Sequence[str],
    label_sources: Sequence[str],
    top_classes: Sequence[Sequence[str]],
    top_probs: np.ndarray,
    excitations: Mapping[str, np.ndarray],
    mask_means: Mapping[str, np.ndarray],
    mask_vars: Mapping[str, np.ndarray],
) -> pa.Table:
    """One batch of rows, built column by column from (N, ...) arrays."""
    columns: dict[str, pa.Array] = {
        "path": pa.array(list(paths), pa.string()),
        "label": pa.array(list(labels), pa.string()),
        "label_source": pa.array(list(label_sources), pa.string()),
        "top5_classes": pa.array([list(c) for c in top_classes], pa.list_(pa.string())),
        "top5_probs": pa.array([list(map(float, p)) for p in top_probs], pa.list_(pa.float32())),
    }
    for name in excitations:
        columns[name] = _fixed(excitations[name])
    for name in mask_means:
        columns[f"{name}_mean"] = _fixed(mask_means[name])
        columns[f"{name}_var"] = _fixed(mask_vars[name])
    return pa.Table.from_pydict(columns, schema=schema)


@dataclass
class Run:
    """A saved run, read back: its metadata and the statistics of its images."""

    path: Path
    metadata: dict[str, Any]
    se: ExcitationStats = field(default_factory=ExcitationStats)
    sge: MaskStats = field(default_factory=MaskStats)

    @property
    def provenance(self) -> Provenance:
        m = self.metadata
        return Provenance(m["model"], m["weights"], bool(m["untrained"]))

    @property
    def failures(self) -> list[dict[str, str]]:
        return self.metadata.get("failures", [])


def _batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=1024, columns=columns)


def read_run(path: str | Path, layers: Sequence[str] | None = None) -> Run:
    """Read a run and rebuild its per-class statistics, a record batch at a time.

    Raises:
        ValueError: not a Parquet file written by ``sevis extract``.
    """
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # ArrowInvalid, OSError
        raise ValueError(f"{path.name}: not a readable Parquet file ({err})") from None
    if not schema.metadata or METADATA_KEY not in schema.metadata:
        raise ValueError(f"{path.name}: not a run written by `sevis extract` (no sevis metadata)")
    metadata = json.loads(schema.metadata[METADATA_KEY])
    run = Run(path, metadata)
    se = [n for n in metadata["se_layers"] if layers is None or n in layers]
    sge = [n for n in metadata["sge_layers"] if layers is None or n in layers]
    columns = ["label", *se, *(f"{n}_{s}" for n in sge for s in ("mean", "var"))]
    for batch in _batches(path, columns):
        labels = batch.column("label").to_pylist()
        if se:
            run.se.update({n: _matrix(batch.column(n)) for n in se}, labels)
        if sge:
            run.sge.update_summaries(
                {n: _matrix(batch.column(f"{n}_mean")) for n in sge},
                {n: _matrix(batch.column(f"{n}_var")) for n in sge},
                labels,
            )
    return run


def _matrix(column: pa.FixedSizeListArray) -> np.ndarray:
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
