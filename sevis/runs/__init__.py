"""Saved runs: the Parquet schema, the writer, the reader with its cache, and row samples; on a disk or at a URI."""

from ._cache import cache_dir
from ._location import Location, is_uri
from .reader import Run, read_run
from .sample import SAMPLE_ROWS, null_bands, read_rows
from .schema import METADATA_KEY, RunMetadata, batch_table, dims_of, read_metadata, run_schema, writer_options
from .writer import MERGED_ROW_GROUP, PART_SIZE, RunWriter, Terminated

__all__ = [
    "MERGED_ROW_GROUP",
    "METADATA_KEY",
    "PART_SIZE",
    "SAMPLE_ROWS",
    "Location",
    "Run",
    "RunMetadata",
    "RunWriter",
    "Terminated",
    "batch_table",
    "cache_dir",
    "dims_of",
    "is_uri",
    "null_bands",
    "read_metadata",
    "read_rows",
    "read_run",
    "run_schema",
    "writer_options",
]
