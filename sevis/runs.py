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

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import pickle
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._threads import one_torch_thread, workers
from ._version import __version__
from .errors import RunError, UnknownLayerError
from .kinds import get_kind
from .pipeline import BatchResult
from .provenance import UNTRAINED_SEED, Provenance
from .stats import ClassStats, NullBand, StatsByKind, specificity_nulls

__all__ = [
    "METADATA_KEY",
    "SAMPLE_ROWS",
    "Run",
    "RunMetadata",
    "batch_table",
    "cache_dir",
    "null_bands",
    "read_rows",
    "read_run",
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


@dataclass
class Run(StatsByKind):
    """A saved run, read back: its metadata and the statistics of its images.

    ``samples`` holds, per kind, the first summary field of a seeded uniform sample of at
    most :data:`SAMPLE_ROWS` images (taken while reading), from which :meth:`null_bands`
    permutes labels without reading the file again."""

    path: Path
    metadata: RunMetadata
    stats: dict[str, ClassStats] = field(default_factory=dict)
    samples: dict[str, tuple[dict[str, np.ndarray], list[str]]] = field(default_factory=dict, repr=False)
    nulls: dict[str, dict[str, NullBand]] = field(default_factory=dict, repr=False)
    cache_file: Path | None = field(default=None, repr=False)
    _pending: dict[str, Future[dict[str, NullBand]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_pending"}  # no threads' futures

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _pending={})

    @property
    def provenance(self) -> Provenance:
        return self.metadata.provenance

    @property
    def failures(self) -> list[dict[str, str]]:
        return self.metadata.failures

    def null_bands(self, kind: str = "se") -> dict[str, NullBand]:
        """Each layer's class-specificity under 200 label permutations of the sampled images
        (see :func:`sevis.stats.specificity_null`); computed once, and kept in the run's cache."""
        return self.prefetch_null_bands(kind).result()

    def prefetch_null_bands(self, kind: str = "se") -> Future[dict[str, NullBand]]:
        """Start computing :meth:`null_bands` in a thread of its own, unless done or under
        way: the dashboard draws the other figures meanwhile. Safe from several threads."""
        with _PENDING:
            if kind not in self._pending:
                future: Future[dict[str, NullBand]] = Future()
                self._pending[kind] = future
                if kind in self.nulls:
                    future.set_result(self.nulls[kind])
                else:
                    threading.Thread(
                        target=self._compute_nulls, args=(kind, future), name="sevis-chance-band", daemon=True
                    ).start()
            return self._pending[kind]

    def _compute_nulls(self, kind: str, future: Future[dict[str, NullBand]]) -> None:
        try:
            rows, labels = self.samples.get(kind) or read_rows(self.path, kind)
            bands = specificity_nulls(rows, labels)
        except BaseException as err:  # noqa: BLE001  raised where the bands are asked for
            future.set_exception(err)
            return
        self.nulls[kind] = bands
        if self.cache_file is not None:  # a small file of its own: the statistics stay as written
            _store(bands, _nulls_file(self.cache_file, kind))
        future.set_result(bands)


_PENDING = threading.Lock()
"""Held while a run's chance-band computation is looked up or started."""


SAMPLE_ROWS = 2000
"""Images a run's chance bands are computed from (a seeded uniform sample)."""
CACHE_VERSION = 1
"""Bumped when what the run cache holds changes: older cache files are then not used."""


def cache_dir() -> Path:
    """Where statistics of saved runs are cached: ``$SEVIS_CACHE_DIR/runs`` or
    ``~/.cache/sevis/runs``."""
    return Path(os.environ.get("SEVIS_CACHE_DIR") or Path.home() / ".cache" / "sevis") / "runs"


def _cache_key(path: Path, layers: Sequence[str] | None) -> str:
    """Names a run's statistics: the hash of its Parquet footer (every column chunk's
    offsets, sizes and statistics, and the sevis metadata), its size and modification time,
    the layers read and the cache format. Hashing the footer, not 3 GB of rows, keeps a
    second open fast; a rewritten file changes its time and footer."""
    stat = path.stat()
    digest = hashlib.sha256(f"{CACHE_VERSION}|{__version__}|{stat.st_size}|{stat.st_mtime_ns}|{layers}".encode())
    with path.open("rb") as file:
        file.seek(max(stat.st_size - 8, 0))
        tail = file.read(8)
        footer = int.from_bytes(tail[:4], "little") if len(tail) == 8 and tail[4:] == b"PAR1" else 0
        file.seek(max(stat.st_size - 8 - min(footer, stat.st_size), 0))
        digest.update(file.read(min(footer, stat.st_size) + 8))
    return digest.hexdigest()


def _nulls_file(target: Path, kind: str) -> Path:
    return target.with_name(f"{target.stem}.{kind}.nulls")


def _store(value: object, target: Path) -> None:
    """Pickle ``value`` to ``target``, whole or not at all; a cache that cannot be written
    is only slower, never an error."""
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as file:
            pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)


def _load(target: Path) -> object:
    try:
        with target.open("rb") as file:
            return pickle.load(file)  # sevis's own cache folder, written by _store only
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
        return None


def _cached(target: Path, path: Path) -> Run | None:
    """The run's statistics from the cache, with the chance bands computed so far."""
    run = _load(target)
    if not isinstance(run, Run):
        return None
    run.path, run.cache_file = path, target
    for kind in run.stats:
        bands = _load(_nulls_file(target, kind))
        if isinstance(bands, dict):
            run.nulls[kind] = bands
    return run


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


def _open(path: Path) -> pq.ParquetFile:
    # NOTE pre_buffer=False: with it, iter_batches reads ahead the whole file (3.5 GB of
    # arrow memory for a 50,000-image run); without, one row group at a time.
    return pq.ParquetFile(path, pre_buffer=False)


READ_AHEAD = 256 << 20
"""Bytes of the next row group a reading thread asks the kernel for while it decodes one."""


@dataclass
class _Share:
    """One reading thread's part of a run: a run of consecutive layers (depth order), their
    statistics per kind, and their values at the sampled rows."""

    layers: dict[str, str]  # layer -> kind
    columns: dict[tuple[str, str], str]  # (layer, field) -> column
    stats: dict[str, ClassStats] = field(default_factory=dict)
    sampled: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)


def _shares(schema: pa.Schema, metadata: RunMetadata, kept: dict[str, str], count: int) -> list[_Share]:
    """``kept`` cut into at most ``count`` runs of consecutive layers of about equal bytes
    (their columns' widths in ``schema``)."""
    width = {f.name: getattr(f.type, "list_size", 1) for f in schema}
    sizes = [
        sum(width.get(get_kind(kind).column(layer, name), 1) for name in metadata.fields_of(layer))
        for layer, kind in kept.items()
    ]
    total, running = sum(sizes), 0
    cuts: list[int] = []
    for i, size in enumerate(sizes[:-1]):
        running += size
        share = total * (len(cuts) + 1) / count
        if len(cuts) < count - 1 and abs(running - share) <= abs(running + sizes[i + 1] - share):
            cuts.append(i + 1)
    bounds = [0, *cuts, len(sizes)]
    layers = list(kept)
    return [
        _Share(
            {layer: kept[layer] for layer in layers[a:b]},
            {
                (layer, name): get_kind(kept[layer]).column(layer, name)
                for layer in layers[a:b]
                for name in metadata.fields_of(layer)
            },
        )
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]


def _read_share(path: Path, metadata: RunMetadata, share: _Share, labels: list[str], pick: np.ndarray) -> _Share:
    """Decode ``share``'s columns a row group at a time and add them to its statistics.

    NOTE each thread decodes and counts its own columns on one core (Arrow's and torch's
    thread pools would compete with the other shares), and asks the kernel for its columns
    of the next row group while it works on this one: a run not in the page cache is read
    from disk during the work."""
    with one_torch_thread():
        for kind_name in dict.fromkeys(share.layers.values()):
            share.stats[kind_name] = get_kind(kind_name).new_stats()
            share.stats[kind_name].reserve(labels)  # every class, in the file's order, sized once
        file = _open(path)
        groups = file.metadata.num_row_groups
        with path.open("rb") as raw:  # for the read-ahead; Arrow reads the path itself
            start = 0
            for group in range(groups):
                if group + 1 < groups:
                    _read_ahead(raw, file.metadata.row_group(group + 1), set(share.columns.values()))
                for batch in file.iter_batches(
                    1024, row_groups=[group], columns=list(share.columns.values()), use_threads=False
                ):
                    _add_batch(share, metadata, batch, labels[start : start + batch.num_rows])
                    inside = pick[(pick >= start) & (pick < start + batch.num_rows)] - start
                    for layer, kind_name in share.layers.items():
                        name = get_kind(kind_name).fields[0]
                        values = _matrix(batch.column(share.columns[layer, name]))[inside]
                        share.sampled.setdefault(kind_name, {}).setdefault(layer, []).append(values)
                    start += batch.num_rows
    return share


def _add_batch(share: _Share, metadata: RunMetadata, batch: pa.RecordBatch, labels: list[str]) -> None:
    for kind_name, stats in share.stats.items():
        kind = get_kind(kind_name)
        summaries = {
            layer: {name: _matrix(batch.column(share.columns[layer, name])) for name in metadata.fields_of(layer)}
            for layer, of in share.layers.items()
            if of == kind_name
        }
        histograms = {layer: kind.histogram_from_summaries(fields) for layer, fields in summaries.items()}
        stats.add(summaries, labels, {k: v for k, v in histograms.items() if v is not None})


def _read_ahead(raw: BinaryIO, group: pq.RowGroupMetaData, columns: set[str]) -> None:
    """Ask the kernel to read the bytes of ``columns`` in a row group (at most
    :data:`READ_AHEAD`) in the background; where it cannot be asked (not Linux, not a
    plain file), nothing happens."""
    chunks = [c for i in range(group.num_columns) if (c := group.column(i)).path_in_schema.split(".")[0] in columns]
    starts = [c.dictionary_page_offset or c.data_page_offset for c in chunks]
    if not starts:
        return
    begin = min(starts)
    end = max(s + c.total_compressed_size for s, c in zip(starts, chunks, strict=True))
    with contextlib.suppress(AttributeError, OSError, ValueError):
        os.posix_fadvise(raw.fileno(), begin, min(end - begin, READ_AHEAD), os.POSIX_FADV_WILLNEED)


def read_run(path: str | Path, layers: Sequence[str] | None = None, *, cache: bool = True, bands: bool = False) -> Run:
    """Read a run and rebuild its per-class statistics, a record batch at a time.

    Args:
        layers: the layers to read (default all); others are skipped unread.
        cache: keep the statistics in :func:`cache_dir`, keyed by the file's footer hash
            (see :func:`_cache_key`), and use them the next time the same file is read.
        bands: start computing the chance bands (:meth:`Run.prefetch_null_bands`) as soon
            as the statistics are read, while they are stored and the caller draws.

    Raises:
        RunError: not a Parquet file written by ``sevis extract``.
        UnknownLayerError: none of ``layers`` is in the run.
    """
    path = Path(path)
    metadata = read_metadata(path)
    kept = {k: v for k, v in metadata.layer_kinds.items() if layers is None or k in layers}
    if layers is not None and not kept:
        raise UnknownLayerError(
            f"none of the layers {list(layers)} is in {path.name}; it has {list(metadata.layer_kinds)}"
        )
    target = cache_dir() / f"{_cache_key(path, layers)}.pkl" if cache else None
    cached = _cached(target, path) if target is not None else None
    run = cached if cached is not None else _compute(path, metadata, kept, target)
    if bands:
        for kind_name, stats in run.stats.items():
            if stats.layers and len(stats.classes) > 1:
                run.prefetch_null_bands(kind_name)
    if target is not None and cached is None:  # the statistics only: bands get files of their own
        _store(dataclasses.replace(run, samples={}, nulls={}, cache_file=None), target)
    return run


def _compute(path: Path, metadata: RunMetadata, kept: dict[str, str], target: Path | None) -> Run:
    """The run's statistics from its rows (see :func:`read_run`); ``target`` is where
    they will be cached."""
    run = Run(path, metadata, cache_file=target)
    file = _open(path)
    labels = file.read(columns=["label"], use_threads=False).column("label").to_pylist()
    pick = _sample(len(labels), SAMPLE_ROWS, 0)
    shares = _shares(file.schema_arrow, metadata, kept, workers())
    with ThreadPoolExecutor(max(1, len(shares)), thread_name_prefix="sevis-run-reader") as pool:
        done = list(pool.map(lambda share: _read_share(path, metadata, share, labels, pick), shares))
    for share in done:  # consecutive layers: each kind's layers stay in depth order
        for kind_name, stats in share.stats.items():
            if kind_name in run.stats:
                run.stats[kind_name].add_layers(stats)
            else:
                run.stats[kind_name] = stats
    sampled_labels = [labels[i] for i in pick]
    run.samples = {}
    for share in done:
        for kind_name, per_layer in share.sampled.items():
            rows = run.samples.setdefault(kind_name, ({}, sampled_labels))[0]
            rows.update({layer: np.concatenate(parts) for layer, parts in per_layer.items()})
    return run


def _sample(total: int, size: int, seed: int) -> np.ndarray:
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
    file = _open(path)
    total = file.metadata.num_rows
    pick = _sample(total, max_rows, seed)
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
    path: str | Path, kind: str = "se", *, max_rows: int = SAMPLE_ROWS, permutations: int = 200, seed: int = 0
) -> dict[str, NullBand]:
    """Each layer's class-specificity under label permutations, from a sample of at most
    ``max_rows`` of the run's images (see :func:`sevis.stats.specificity_null`)."""
    rows, labels = read_rows(path, kind, max_rows=max_rows, seed=seed)
    return specificity_nulls(rows, labels, permutations=permutations, seed=seed)


def _matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
