"""A saved run's rows read back a layer or a seeded sample at a time, and its chance bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..attention.kinds import get_kind
from ..stats.measures import PERMUTATIONS, NullBand, specificity_nulls
from ._location import Location
from .schema import check_text_columns, column_matrix, open_run_file, read_metadata

__all__ = ["SAMPLE_ROWS", "null_bands", "read_layer", "read_rows", "sample_rows"]


SAMPLE_ROWS = 2000
"""Images of a run kept while its statistics are read (a seeded uniform sample): a run of
at most this many has all its rows in memory for its chance bands."""


def sample_rows(total: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a seeded uniform sample of at most ``size`` of ``total`` rows."""
    if total <= size:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


def read_rows(
    path: str | Path | Location, kind: str, *, max_rows: int = SAMPLE_ROWS, seed: int = 0
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per layer of ``kind``, its first summary field for at most ``max_rows`` images of the
    run (a uniform sample, the same for the same ``seed``), (N, D), and their labels."""
    path = Location.of(path)
    metadata = read_metadata(path)
    spec = get_kind(kind)
    layers = metadata.attention.get(kind, [])
    columns = ["label", *(spec.column(layer, spec.fields[0]) for layer in layers)]
    check_text_columns(path)
    file = open_run_file(path)
    total = file.num_rows
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


def read_layer(path: str | Path | Location, column: str, rows: int) -> np.ndarray:
    """The fixed-size-list ``column`` of a run of ``rows`` rows as one (rows, D) float32
    array, filled a record batch at a time (no second copy of the column in Arrow's memory)."""
    file = open_run_file(path)
    out: np.ndarray | None = None
    start = 0
    for batch in file.iter_batches(batch_size=2048, columns=[column]):
        values = column_matrix(batch.column(0))
        if out is None:
            out = np.empty((rows, values.shape[1]), np.float32)
        out[start : start + len(values)] = values
        start += len(values)
    if out is None or start != rows:
        raise ValueError(f"{column}: {start} rows where the run has {rows}")
    return out


def null_bands(
    path: str | Path | Location,
    kind: str = "se",
    *,
    max_rows: int | None = None,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, NullBand]:
    """Each layer's class-specificity under label permutations of every image of the run
    (see :func:`sevis.stats.specificity_null`): the band of the run's own N, a layer read
    at a time (memory: twice one layer's values in float32). Every layer is shuffled alike
    (the same ``seed``).

    Args:
        max_rows: of a seeded sample of at most this many images instead (its band is that
            of a set of that size: wider than the whole run's).
        threads: see :func:`sevis.stats.specificity_nulls`.
    """
    if max_rows is not None:
        rows, labels = read_rows(path, kind, max_rows=max_rows, seed=seed)
        return specificity_nulls(rows, labels, permutations=permutations, seed=seed, threads=threads)
    path = Location.of(path)
    metadata = read_metadata(path)
    spec = get_kind(kind)
    check_text_columns(path)
    labels = open_run_file(path).read(columns=["label"], use_threads=False).column("label").to_pylist()
    bands: dict[str, NullBand] = {}
    for layer in metadata.attention.get(kind, []):
        values = read_layer(path, spec.column(layer, spec.fields[0]), len(labels))
        bands |= specificity_nulls({layer: values}, labels, permutations=permutations, seed=seed, threads=threads)
        del values
    return bands
