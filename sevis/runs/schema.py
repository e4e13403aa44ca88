"""The saved-run format: one Parquet row per image, statistics rebuilt on reading.

Columns:

* ``path`` (string): the image's path inside the dataset folder or zip;
* ``label`` (string): the folder's name, or the predicted class for a flat folder;
* ``label_source`` (string): ``"folder"``, ``"file"`` or ``"predicted"``;
* ``top5_classes`` (list<string>) and ``top5_probs`` (list<float32>);
* per attention layer, one column per summary field of its kind (see
  :mod:`sevis.attention.kinds`), fixed_size_list<float32>[D]: SE layers one column named by the
  layer (``SE_4_6``, the excitation vector), SGE layers two (``SGE_4_6_mean``,
  ``SGE_4_6_var``: each group's mask mean and spatial variance).

The schema's metadata key ``sevis`` holds :class:`RunMetadata` as JSON.

A run is one Parquet file, or a folder of them (:func:`run_files`): the parts a run is
written as, or what Ray writes natively, each file with the same schema and settings, its
rows in the order of the files' names; the folder's ``failures.jsonl`` lists the images that
could not be read. Both are read alike (:func:`read_metadata`, :func:`open_run_file`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from ..attention.kinds import get_kind
from ..errors import RunError, shortened
from ..hooks.forward import BatchResult
from ..provenance import UNTRAINED_SEED, Provenance
from ._location import Location, is_uri

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_RUN_FILES",
    "MAX_TEXT_BYTES",
    "METADATA_KEY",
    "RunFiles",
    "RunMetadata",
    "batch_table",
    "check_text_columns",
    "column_matrix",
    "dims_of",
    "is_run",
    "is_run_folder",
    "open_run_file",
    "read_failures",
    "read_metadata",
    "rebatch",
    "run_files",
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
        labels: ``"folder"``, ``"file"`` (a label file) or ``"predicted"``.
        per_class, seed: the per-class sample asked for, if any.
        layers: the layers asked for (None: all).
        images: rows written; failures: ``{"path", "reason"}`` of each unreadable file.
        self_check: the weights' self-check on photographs (``SelfCheck.to_dict()``), or
            None where it does not apply.
        distributions: each part and the merged file carry the distributions before and
            after SGE of their images (:mod:`sevis.runs.distributions`).
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
    distributions: bool = False

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
        """Read the JSON back, also as written by sevis 0.1 (``se_layers``/``sge_layers``).

        Raises:
            RunError: not JSON, too large or too deep, or not of the shape sevis writes
                (the message names the first field that is not, never its value).
        """
        if len(text) > MAX_METADATA_BYTES:
            raise RunError(f"its metadata is {len(text) / 1024**2:,.0f} MB, more than sevis writes")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise RunError("its metadata is not readable JSON (or nested too deep)") from None
        if not isinstance(data, dict):
            raise RunError("its metadata is not of the shape sevis writes (not an object)")
        if "attention" not in data:  # sevis 0.1
            se, sge = data.pop("se_layers", []), data.pop("sge_layers", [])
            data["attention"] = {k: v for k, v in (("se", se), ("sge", sge)) if v}
            data["dims"] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        _check_shape(data)
        return cls(**data)


MAX_METADATA_BYTES = 64 * 1024**2
"""Largest metadata read (a 50,000-image run with every image unreadable: about 15 MB)."""
MAX_TEXT_BYTES = 4096
"""Longest path or label a run's rows may hold; a longer one is refused before the
column is decoded (800 rows of one 1 MB label, dictionary-encoded, were a 150 KB file
and gigabytes of strings)."""


_Text = ("text", MAX_TEXT_BYTES)
_SHAPE: dict[str, Any] = {  # field -> what its JSON value must be
    "model": _Text,
    "weights": _Text,
    "weights_sha256": ("optional", _Text),
    "untrained": "bool",
    "sevis_version": _Text,
    "data_config": (
        "partial",  # runs written by tests and by sevis 0.1 may lack keys; those present are checked
        {
            "input_size": ("list", "int", 3),
            "crop_pct": "number",
            "interpolation": _Text,
            "mean": ("list", "number", 3),
            "std": ("list", "number", 3),
        },
    ),
    "attention": ("mapping", ("list", _Text, None)),
    "dims": ("mapping", ("mapping", "int")),
    "source": _Text,
    "labels": _Text,
    "per_class": ("optional", "int"),
    "seed": "int",
    "layers": ("optional", ("list", _Text, None)),
    "images": "int",
    "failures": ("list", ("object", {"path": ("text", 1 << 20), "reason": ("text", 1 << 20)}), None),
    "self_check": ("optional", ("mapping", "any")),
    "distributions": "bool",
}
_REQUIRED = ("model", "weights", "untrained", "sevis_version", "data_config", "attention", "source", "labels")


def _check_shape(data: dict[str, Any]) -> None:
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise RunError(f"its metadata lacks {', '.join(missing)}: not written by `sevis extract`")
    for name, value in data.items():
        problem = _mismatch(value, _SHAPE[name])
        if problem:
            raise RunError(f"its metadata is not of the shape sevis writes ({name}: {problem})")
    if data["labels"] not in ("folder", "file", "predicted"):
        raise RunError("its metadata is not of the shape sevis writes (labels: not folder, file or predicted)")
    config = data["data_config"]
    if not all(0 < v <= 4096 for v in config.get("input_size", [1])) or not 0 < config.get("crop_pct", 1) <= 1:
        raise RunError("its metadata is not of the shape sevis writes (data_config: sizes out of range)")


def _mismatch(value: Any, shape: Any) -> str:
    """What about ``value`` does not fit ``shape`` (empty when it fits)."""
    if shape == "any":
        return ""
    if shape == "bool":
        return "" if isinstance(value, bool) else "expected true or false"
    if shape == "int":
        return "" if isinstance(value, int) and not isinstance(value, bool) else "expected a whole number"
    if shape == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        return "" if ok else "expected a number"
    kind = shape[0]
    if kind == "text":
        if not isinstance(value, str):
            return "expected text"
        return "" if len(value) <= shape[1] else f"text longer than {shape[1]:,} characters"
    if kind == "optional":
        return "" if value is None else _mismatch(value, shape[1])
    if kind == "list":
        if not isinstance(value, list):
            return "expected a list"
        if shape[2] is not None and len(value) != shape[2]:
            return f"expected {shape[2]} values"
        return next((m for m in (_mismatch(v, shape[1]) for v in value) if m), "")
    if kind == "mapping":
        if not isinstance(value, dict):
            return "expected an object"
        bad_key = next((k for k in value if len(k) > MAX_TEXT_BYTES), None)
        if bad_key is not None:
            return "a name too long"
        return next((m for m in (_mismatch(v, shape[1]) for v in value.values()) if m), "")
    if not isinstance(value, dict):  # "object" / "partial": these keys (all / those present), each of its shape
        return "expected an object"
    absent = [k for k in shape[1] if k not in value]
    if absent and kind == "object":
        return f"lacks {', '.join(absent)}"
    return next((m for m in (_mismatch(value[k], s) for k, s in shape[1].items() if k in value) if m), "")


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
    given: str = "folder",
) -> pa.Table:
    """The rows of one batch; a ``None`` label becomes the predicted class. ``given``: the
    ``label_source`` of the others (``"folder"`` or ``"file"``)."""
    columns: dict[str, pa.Array] = {
        "path": pa.array(list(paths), pa.string()),
        "label": pa.array(
            [given if given is not None else top for given, top in zip(labels, batch.predicted, strict=True)],
            pa.string(),
        ),
        "label_source": pa.array([given if label is not None else "predicted" for label in labels], pa.string()),
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


def read_metadata(path: str | Path | Location) -> RunMetadata:
    """The metadata of a run (a file or a folder of them), from its schema alone; a
    folder's ``images`` are its files' rows and its ``failures`` its ``failures.jsonl``.

    Raises:
        RunError: not a Parquet file written by ``sevis extract``, or a folder whose files
            are not all parts of one run.
    """
    where = Location.of(path)
    if where.is_dir():
        return _folder_metadata(where)
    return _file_metadata(where)[0]


def _file_metadata(path: Location) -> tuple[RunMetadata, pa.Schema, int]:
    """A run file's metadata, schema and rows, from one read of its footer."""
    try:
        footer = pq.read_metadata(path.path, filesystem=path.fs)
        schema = footer.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as err:
        raise RunError(f"{path.name}: not a readable Parquet file ({err})") from None
    if not schema.metadata or METADATA_KEY not in schema.metadata:
        raise RunError(f"{path.name}: not a run written by `sevis extract` (no sevis metadata)")
    try:
        metadata = RunMetadata.from_json(schema.metadata[METADATA_KEY])
        _check_columns(metadata, schema)
    except RunError as err:
        raise RunError(f"{_shown(path.name)}: {err}") from None
    return metadata, schema, footer.num_rows


MAX_RUN_FILES = 1_000_000
"""Parquet files a run folder may hold (a part per batch: 1.28 M images in batches of 64 are 20,000)."""


def run_files(path: str | Path | Location) -> list[Location]:
    """The Parquet files a run is made of: the file itself, or a folder's ``*.parquet``
    files in the order of their names (hidden ones, a part being written, are not yet part
    of it). ``path``: on this machine, or a ``pyarrow.fs`` URI (``s3://bucket/run``).

    Raises:
        RunError: a folder without Parquet files, or with more than :data:`MAX_RUN_FILES`.
    """
    where = Location.of(path)
    if not where.is_dir():
        return [where]
    names: list[str] = []
    try:
        for name, is_file in where.entries():
            if _is_part(name, is_file):
                names.append(name)
                if len(names) > MAX_RUN_FILES:
                    raise RunError(f"{_shown(where.name)}: more than {MAX_RUN_FILES:,} Parquet files; not read")
    except OSError as err:
        raise RunError(f"{_shown(where.name)}: not a readable folder ({err.strerror or err})") from None
    if not names:
        raise RunError(f"{_shown(where.name)}: a folder without Parquet files is no run")
    return [where / name for name in sorted(names)]


def _is_part(name: str, is_file: bool) -> bool:
    """A file of a run folder: a ``.parquet`` file, not hidden (a part being written)."""
    return name.endswith(".parquet") and not name.startswith(".") and is_file


def is_run(path: str | Path | Location) -> bool:
    """A saved run by its name or contents: a ``.parquet`` file or a run folder (on this
    machine or at a ``pyarrow.fs`` URI), as opposed to a folder or zip of images."""
    if isinstance(path, Location):
        name = path.name
    else:
        name = str(path).split("?", 1)[0] if is_uri(path) else Path(path).name
    return name.lower().endswith(".parquet") or is_run_folder(path)


def is_run_folder(path: str | Path | Location) -> bool:
    """A folder holding Parquet files of its own (a run written as parts), as opposed to
    a folder of images."""
    try:
        return any(_is_part(name, is_file) for name, is_file in Location.of(path).entries())
    except (OSError, RunError):  # not a folder, or not one that can be listed: whoever opens it says why
        return False


def _folder_metadata(folder: Location) -> RunMetadata:
    """:func:`read_metadata` of a run folder: every file's settings and columns those of
    the first."""
    files = run_files(folder)
    metadata, first, images = _file_metadata(files[0])
    settings, failures = metadata.settings(), list(metadata.failures)
    for part in files[1:]:
        other, schema, rows = _file_metadata(part)  # NOTE one footer read a file: a folder may hold thousands
        if other.settings() != settings or schema.names != first.names:
            raise RunError(
                f"{_shown(folder.name)}: {_shown(part.name)} was made with other settings than "
                f"{_shown(files[0].name)}: not one run"
            )
        failures += other.failures
        images += rows
    log_file = folder / "failures.jsonl"
    if log_file.is_file():
        failures += read_failures(log_file)
    # NOTE once each: a finished run resumed as parts holds its failures twice (its merged
    # file, now the first part, and the log they were copied to)
    unique = dict.fromkeys((f["path"], f["reason"]) for f in failures)
    metadata.images, metadata.failures = images, [{"path": p, "reason": r} for p, r in unique]
    return metadata


def read_failures(log_file: Path | Location) -> list[dict[str, str]]:
    """The records of a run's failures log (``{"path": ..., "reason": ...}`` a line); a
    last line without its newline (an append cut short) is not one.

    Raises:
        RunError: a line that is not a failure record (named, with what to do).
    """
    data = Location.of(log_file).read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    failures = []
    for number, line in enumerate(whole.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("path", "reason"))):
            raise RunError(
                f"line {number} of {log_file} is not a failure record; "
                "delete that line and resume (its image is tried again), or pass --overwrite"
            )
        failures.append({"path": entry["path"], "reason": entry["reason"]})
    return failures


def _check_columns(metadata: RunMetadata, schema: pa.Schema) -> None:
    """Every kind the metadata names is known and every column it implies is there."""
    names = set(schema.names)
    for kind_name, layers in metadata.attention.items():
        try:
            kind = get_kind(kind_name)
        except ValueError:
            raise RunError(
                f"it was made with an attention kind this sevis does not know ({_shown(kind_name)}); "
                "load the plugin that registers it"
            ) from None
        for layer in layers:
            fields = metadata.dims.get(layer, kind.fields)
            if any(kind.column(layer, f) not in names for f in fields):
                raise RunError(f"its metadata names layer {_shown(layer)}, whose columns are not in the file")


def check_text_columns(path: str | Path | Location) -> None:
    """Refuse a run whose ``path`` or ``label`` values are longer than
    ``MAX_TEXT_BYTES``, before they are decoded: plain pages by the sizes the footer
    states, dictionary pages by the dictionary's own values (read as a dictionary, not
    expanded row by row).

    Raises:
        RunError: a value too long, or a footer that does not add up.
    """
    for part in run_files(path):
        _check_text_columns(part)


def _check_text_columns(path: Location) -> None:
    columns = ["path", "label"]
    try:
        file = pq.ParquetFile(path.path, filesystem=path.fs, read_dictionary=columns, pre_buffer=False)
        names = file.schema_arrow.names
        if not all(c in names for c in columns):
            raise RunError(f"{_shown(path.name)}: not a run written by `sevis extract` (no path or label column)")
        where = {c: file.metadata.schema.names.index(c) for c in columns}
        for group in range(file.metadata.num_row_groups):
            meta = file.metadata.row_group(group)
            for column, index in where.items():
                chunk = meta.column(index)
                plain = "PLAIN_DICTIONARY" not in chunk.encodings and "RLE_DICTIONARY" not in chunk.encodings
                if plain and chunk.total_uncompressed_size > meta.num_rows * (MAX_TEXT_BYTES + 4) + 4096:
                    raise RunError(_too_long(path, column))
            table = file.read_row_group(group, columns=columns, use_threads=False)
            for column in columns:
                for piece in table.column(column).chunks:
                    values = piece.dictionary if pa.types.is_dictionary(piece.type) else piece
                    longest = pa.compute.max(pa.compute.binary_length(values)).as_py() or 0
                    if longest > MAX_TEXT_BYTES:
                        raise RunError(_too_long(path, column))
    except (pa.ArrowException, OSError) as err:
        raise RunError(f"{_shown(path.name)}: not a readable Parquet file ({str(err)[:200]})") from None


def _too_long(path: Location, column: str) -> str:
    return f"{_shown(path.name)}: refused, a {column} in it is longer than {MAX_TEXT_BYTES:,} bytes; not read"


def _shown(name: str) -> str:
    return shortened(name)


class RunFiles:
    """A run's Parquet files (:func:`run_files`) read as one, a file at a time, each opened
    only while it is read (a folder may hold thousands)."""

    def __init__(self, path: str | Path | Location) -> None:
        self.files = run_files(path)
        self._rows: int | None = None

    @property
    def schema_arrow(self) -> pa.Schema:
        return pq.read_schema(self.files[0].path, filesystem=self.files[0].fs)

    @property
    def num_rows(self) -> int:
        if self._rows is None:
            self._rows = sum(pq.read_metadata(f.path, filesystem=f.fs).num_rows for f in self.files)
        return self._rows

    def parts(self) -> Iterator[pq.ParquetFile]:
        """Each file opened to be read one row group at a time, in the run's order."""
        for file in self.files:
            # NOTE pre_buffer=False: with it, iter_batches reads ahead the whole file (3.5 GB of
            # arrow memory for a 50,000-image run); without, one row group at a time.
            with pq.ParquetFile(file.path, filesystem=file.fs, pre_buffer=False) as part:
                yield part

    def iter_batches(
        self, batch_size: int, columns: Sequence[str] | None = None, use_threads: bool = True
    ) -> Iterator[pa.RecordBatch]:
        """The rows ``batch_size`` at a time (the last fewer), whatever the files' sizes: a
        folder of one-image parts is read in batches as large as a file's."""
        batches = (
            batch
            for part in self.parts()
            for batch in part.iter_batches(batch_size=batch_size, columns=columns, use_threads=use_threads)
        )
        yield from rebatch(batches, batch_size)

    def read(self, columns: Sequence[str] | None = None, use_threads: bool = True) -> pa.Table:
        tables = [part.read(columns=columns, use_threads=use_threads) for part in self.parts()]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """``batches`` regrouped ``size`` rows at a time (the last fewer), those of that size
    passed on as they are: a run folder's rows in the batches its merged file gives, so
    that its statistics are summed in the same order, to the last bit."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if not pending and batch.num_rows == size:
            yield batch
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            joined = pa.Table.from_batches(pending).combine_chunks()
            yield from joined.slice(0, size).to_batches()
            rest = joined.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield from pa.Table.from_batches(pending).combine_chunks().to_batches()


def open_run_file(path: str | Path | Location) -> RunFiles:
    """A run (a file or a folder of them), opened to be read one row group at a time."""
    return RunFiles(path)


def column_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column of D values per row as an (N, D) array (no copy where
    Arrow allows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
