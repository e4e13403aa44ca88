"""Reading a saved run: its statistics rebuilt with one thread per core, cached, chance bands in the background."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._files import FileRefused, opened_within
from .._threads import one_torch_thread, workers
from ..attention.kinds import get_kind
from ..errors import RunError, UnknownLayerError, shortened
from ..provenance import Provenance
from ..stats.by_kind import StatsByKind
from ..stats.classes import ClassStats
from ..stats.measures import NullBand, specificity_nulls
from ._cache import _cache_key, _load, _nulls_file, _store, cache_dir
from ._location import Location
from .distributions import read_distributions
from .sample import SAMPLE_ROWS, null_bands
from .schema import RunMetadata, check_text_columns, column_matrix, open_run_file, read_metadata, rebatch, run_files
from .writer import MERGED_ROW_GROUP

__all__ = ["ITER_ROWS", "LayerRows", "Run", "read_run"]


class LayerRows(NamedTuple):
    """Some images' values of one layer: ``values`` (n, D) float32, each image's label and
    its name (a saved run: the path in its source)."""

    values: np.ndarray
    labels: list[str]
    names: list[str]


ITER_ROWS = 2048
"""Rows of a saved run read at a time by :meth:`Run.iter_layer`."""


@dataclass
class Run(StatsByKind):
    """A saved run, read back: its metadata and the statistics of its images.

    ``samples`` holds, per kind, the first summary field of every image of a run of at
    most :data:`SAMPLE_ROWS` images (taken while reading), from which :meth:`null_bands`
    permutes labels without reading the file again; a larger run's bands read it again, a
    layer at a time."""

    path: Path | Location
    """The run's file or folder: on this machine, or at a URI (a :class:`~sevis.runs.Location`)."""
    metadata: RunMetadata
    stats: dict[str, ClassStats] = field(default_factory=dict)
    samples: dict[str, tuple[dict[str, np.ndarray], list[str]]] = field(default_factory=dict, repr=False)
    nulls: dict[str, dict[str, NullBand]] = field(default_factory=dict, repr=False)
    cache_file: Path | None = field(default=None, repr=False)
    within: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    """The folders the file was read inside (:func:`read_run`'s ``within``): every later
    read of its rows opens it again there and checks it is the file read then."""
    opened_as: tuple[int, ...] | None = field(default=None, repr=False, compare=False)
    """The file read (device, inode, size, modification time), when ``within`` is set."""
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

    def iter_layer(self, layer: str, field_name: str | None = None) -> Iterator[LayerRows]:
        """Every image's ``layer`` values (its kind's first summary field by default), in
        file order, :data:`ITER_ROWS` at a time: memory stays bounded at any run size.

        Raises:
            UnknownLayerError: the run has no such layer.
        """
        kind = self.metadata.layer_kinds.get(layer)
        if kind is None:
            raise UnknownLayerError(f"no layer {layer!r} in the run; it has {list(self.metadata.layer_kinds)}")
        spec = get_kind(kind)
        column = spec.column(layer, field_name or spec.fields[0])
        with self._source() as source:
            for batch in open_run_file(source).iter_batches(batch_size=ITER_ROWS, columns=["path", "label", column]):
                yield LayerRows(
                    column_matrix(batch.column(column)),
                    batch.column("label").to_pylist(),
                    batch.column("path").to_pylist(),
                )

    @contextlib.contextmanager
    def _source(self) -> Iterator[Path | Location]:
        """The run's file to read its rows from: with :attr:`within`, opened again inside
        those folders and checked to be the very file the statistics came from.

        Raises:
            RunError: the file is gone, lies outside the folders now, or is another file.
        """
        if self.within is None or not isinstance(self.path, Path):
            yield self.path
            return
        with contextlib.ExitStack() as stack:
            try:
                source = stack.enter_context(opened_within(self.path, self.within))
            except FileRefused as err:
                raise RunError(f"{shortened(self.path.name)}: {err}; not read") from None
            if _identity(source) != self.opened_as:
                raise RunError(f"{shortened(self.path.name)} changed since it was read; open it again")
            yield source

    def null_bands(self, kind: str = "se") -> dict[str, NullBand]:
        """Each layer's class-specificity under 199 label permutations of all the run's
        images (see :func:`sevis.stats.specificity_null`), the band of the run's own N;
        computed once, and kept in the run's cache. A 50,000-image SE-ResNet-50 run takes
        a minute or two: :meth:`prefetch_null_bands` starts it in the background."""
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
            if kind in self.samples:
                rows, labels = self.samples[kind]
                bands = specificity_nulls(rows, labels)
            else:  # NOTE minutes for a large run: a core is left to whoever waits meanwhile
                with self._source() as source:
                    bands = null_bands(source, kind, threads=max(1, workers() - 1))
        except BaseException as err:  # noqa: BLE001  raised where the bands are asked for
            future.set_exception(err)
            return
        self.nulls[kind] = bands
        if self.cache_file is not None:  # a small file of its own: the statistics stay as written
            _store(bands, _nulls_file(self.cache_file, kind))
        future.set_result(bands)


_PENDING = threading.Lock()
"""Held while a run's chance-band computation is looked up or started."""


def _identity(path: Path) -> tuple[int, ...]:
    """What tells one file from another that took its name: device, inode, size and
    modification time."""
    found = os.stat(path)
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _cached(target: Path, path: Path | Location) -> Run | None:
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


def _read_share(path: Path | Location, metadata: RunMetadata, share: _Share, labels: list[str], keep: bool) -> _Share:
    """Decode ``share``'s columns a row group at a time and add them to its statistics.

    NOTE each thread decodes and counts its own columns on one core (Arrow's and torch's
    thread pools would compete with the other shares), and asks the kernel for its columns
    of the next row group while it works on this one: a run not in the page cache is read
    from disk during the work."""
    with one_torch_thread():
        for kind_name in dict.fromkeys(share.layers.values()):
            share.stats[kind_name] = get_kind(kind_name).new_stats()
            share.stats[kind_name].reserve(labels)  # every class, in the file's order, sized once
        start = 0
        for batch in rebatch(_share_batches(path, share), READ_ROWS):
            _add_batch(share, metadata, batch, labels[start : start + batch.num_rows])
            for layer, kind_name in share.layers.items() if keep else ():
                name = get_kind(kind_name).fields[0]
                values = column_matrix(batch.column(share.columns[layer, name])).copy()
                share.sampled.setdefault(kind_name, {}).setdefault(layer, []).append(values)
            start += batch.num_rows
    return share


READ_ROWS = MERGED_ROW_GROUP
"""Rows of a run summed at a time: a merged file's row group; a run folder's small parts are
regrouped to it, so that both sum alike."""


def _share_batches(path: Path | Location, share: _Share) -> Iterator[pa.RecordBatch]:
    """A share's columns of every file of the run, a row group at a time; a file on this
    machine's disk: the kernel asked for the next row group's while one is decoded."""
    columns = list(share.columns.values())
    for part in run_files(path):
        with contextlib.ExitStack() as stack:
            file = stack.enter_context(pq.ParquetFile(part.path, filesystem=part.fs, pre_buffer=False))
            raw = stack.enter_context(part.local.open("rb")) if part.local is not None else None  # the read-ahead's
            groups = file.metadata.num_row_groups
            for group in range(groups):
                if raw is not None and group + 1 < groups:
                    _read_ahead(raw, file.metadata.row_group(group + 1), set(columns))
                yield from file.iter_batches(READ_ROWS, row_groups=[group], columns=columns, use_threads=False)


def _add_batch(share: _Share, metadata: RunMetadata, batch: pa.RecordBatch, labels: list[str]) -> None:
    for kind_name, stats in share.stats.items():
        kind = get_kind(kind_name)
        summaries = {
            layer: {name: column_matrix(batch.column(share.columns[layer, name])) for name in metadata.fields_of(layer)}
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


def read_run(
    path: str | Path | Location,
    layers: Sequence[str] | None = None,
    *,
    cache: bool = True,
    bands: bool = False,
    within: Sequence[str] | None = None,
) -> Run:
    """Read a run and rebuild its per-class statistics, a record batch at a time.

    Args:
        path: a run file or folder on this machine, or at a ``pyarrow.fs`` URI
            (``s3://bucket/run``; its query sets the filesystem's options).
        layers: the layers to read (default all); others are skipped unread.
        cache: keep the statistics in :func:`cache_dir`, keyed by the file's footer hash
            (see :func:`_cache_key`), and use them the next time the same file is read.
        bands: start computing the chance bands (:meth:`Run.prefetch_null_bands`) as soon
            as the statistics are read, while they are stored and the caller draws.
        within: folders the file must lie in, checked on the file as opened; the whole
            read is of that file, whatever is renamed or swapped meanwhile (a server's
            paths; None: any file).

    Raises:
        RunError: not a Parquet file written by ``sevis extract``.
        UnknownLayerError: none of ``layers`` is in the run.
    """
    where = Location.of(path)
    if within is None:
        run_path = where.local if where.local is not None else where
        return _read_run(run_path, run_path, layers, cache, bands, None)
    if where.local is None:
        raise RunError(f"{shortened(where.name)} is at a URI: here a run is opened from the server's own folders")
    path = where.local
    if path.is_dir():
        raise RunError(
            f"{shortened(path.name)} is a run folder: here a run is opened as one file "
            "(sevis.read_run and the command line read a folder)"
        )
    try:
        with opened_within(path, within) as source:
            return _read_run(path, source, layers, cache, bands, tuple(map(str, within)))
    except FileRefused as err:
        raise RunError(f"{shortened(path.name)}: {err}; not read") from None


def _read_run(
    path: Path | Location,
    source: Path | Location,
    layers: Sequence[str] | None,
    cache: bool,
    bands: bool,
    within: tuple[str, ...] | None,
) -> Run:
    """:func:`read_run` of ``source`` (``path``, or the file ``path`` was opened as, inside
    the folders ``within``)."""
    metadata = read_metadata(source)
    kept = {k: v for k, v in metadata.layer_kinds.items() if layers is None or k in layers}
    if layers is not None and not kept:
        raise UnknownLayerError(
            f"none of the layers {list(layers)} is in {path.name}; it has {list(metadata.layer_kinds)}"
        )
    target = cache_dir() / f"{_cache_key(source, layers)}.pkl" if cache else None
    cached = _cached(target, path) if target is not None else None
    run = cached if cached is not None else _compute(path, metadata, kept, target, source)
    run.within = within
    run.opened_as = _identity(source) if within is not None and isinstance(source, Path) else None
    if bands:
        for kind_name, stats in run.stats.items():
            if stats.layers and len(stats.classes) > 1:
                run.prefetch_null_bands(kind_name)
    if target is not None and cached is None:  # the statistics only: bands get files of their own
        # NOTE no filesystem in the cache: an S3 one pickles its keys (the path is set again on loading)
        stored = run.path if isinstance(run.path, Path) else Path(run.path.name)
        plain = dataclasses.replace(
            run, path=stored, samples={}, nulls={}, cache_file=None, within=None, opened_as=None
        )
        _store(plain, target)
    return run


def _compute(
    path: Path | Location, metadata: RunMetadata, kept: dict[str, str], target: Path | None, source: Path | Location
) -> Run:
    """The run's statistics from the rows of ``source`` (see :func:`read_run`);
    ``target`` is where they will be cached."""
    run = Run(path, metadata, cache_file=target)
    check_text_columns(source)  # before any path or label is decoded
    file = open_run_file(source)
    labels = file.read(columns=["label"], use_threads=False).column("label").to_pylist()
    keep = len(labels) <= SAMPLE_ROWS  # the rows kept for the chance bands; a larger run is read again
    shares = _shares(file.schema_arrow, metadata, kept, workers())
    with ThreadPoolExecutor(max(1, len(shares)), thread_name_prefix="sevis-run-reader") as pool:
        done = list(pool.map(lambda share: _read_share(source, metadata, share, labels, keep), shares))
    for share in done:  # consecutive layers: each kind's layers stay in depth order
        for kind_name, stats in share.stats.items():
            if kind_name in run.stats:
                run.stats[kind_name].add_layers(stats)
            else:
                run.stats[kind_name] = stats
    for layer, named in (read_distributions(source, metadata) or {}).items():
        if layer in kept and kept[layer] in run.stats:
            for name, counts in named.items():
                run.stats[kept[layer]].set_distribution(layer, name, counts)
    run.samples = {}
    for share in done:
        for kind_name, per_layer in share.sampled.items():
            rows = run.samples.setdefault(kind_name, ({}, labels))[0]
            rows.update({layer: np.concatenate(parts) for layer, parts in per_layer.items()})
    return run
