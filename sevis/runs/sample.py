"""A seeded sample of a saved run's rows, and the chance bands computed from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..attention.kinds import get_kind
from ..stats.measures import NullBand, specificity_nulls
from .schema import check_text_columns, column_matrix, open_run_file, read_metadata

__all__ = ["SAMPLE_ROWS", "null_bands", "read_rows", "sample_rows"]


SAMPLE_ROWS = 2000
"""Images a run's chance bands are computed from (a seeded uniform sample)."""


def sample_rows(total: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a seeded uniform sample of at most ``size`` of ``total`` rows."""
    if total <= size:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


def read_rows(
    path: str | Path, kind: str, *, max_rows: int = SAMPLE_ROWS, seed: int = 0
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per layer of ``kind``, its first summary field for at most ``max_rows`` images of the
    run (a uniform sample, the same for the same ``seed``), (N, D), and their labels."""
    path = Path(path)
    metadata = read_metadata(path)
    spec = get_kind(kind)
    layers = metadata.attention.get(kind, [])
    columns = ["label", *(spec.column(layer, spec.fields[0]) for layer in layers)]
    check_text_columns(path)
    file = open_run_file(path)
    total = file.metadata.num_rows
    pick = sample_rows(total, max_rows, seed)
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
    rows = {layer: column_matrix(table.column(spec.column(layer, spec.fields[0]))) for layer in layers}
    return rows, table.column("label").to_pylist()


def null_bands(
    path: str | Path, kind: str = "se", *, max_rows: int = SAMPLE_ROWS, permutations: int = 200, seed: int = 0
) -> dict[str, NullBand]:
    """Each layer's class-specificity under label permutations, from a sample of at most
    ``max_rows`` of the run's images (see :func:`sevis.stats.specificity_null`)."""
    rows, labels = read_rows(path, kind, max_rows=max_rows, seed=seed)
    return specificity_nulls(rows, labels, permutations=permutations, seed=seed)
