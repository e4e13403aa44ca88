"""Writing a saved run: part files as the run goes, failures, resume, the final merge.

Both extraction engines (:mod:`sevis.jobs.extraction` and :mod:`sevis.jobs.ray_engine`) feed one
:class:`RunWriter`. Each batch's rows are written as a part file of ``{out}.parts/``
as soon as the batch is done (whole under a temporary name, then renamed), so a run
stopped at any moment (Ctrl-C, SIGTERM, kill -9, a full disk) loses at most the batch
in flight; resuming carries on from the parts, and the final file is the same as an
uninterrupted run's. Settings are compared before anything is written: a run is never
resumed with other settings, and a refused resume leaves the run as it was.

The local engine hands the writer its rows (:meth:`RunWriter.add`). Ray's actors write
their batches' rows themselves (:func:`write_incoming`, into the same folder) and the
driver only adopts each file as the run's next part (:meth:`RunWriter.adopt`), in the
dataset's order: no row passes through the driver. A file written but never adopted (its
driver was killed first) is no part: it is deleted, and its images are done again.

An ``out`` whose name does not end in ``.parquet`` is a run folder: the parts are the run
(no final merge, nothing rewritten by one process), read by :func:`sevis.read_run` as one file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RunError, shortened
from ._location import Location
from .distributions import Counts, add_counts, read_distributions, with_distributions
from .schema import RunMetadata, read_failures, read_metadata, run_schema, writer_options

__all__ = ["INCOMING", "MERGED_ROW_GROUP", "PART_SIZE", "RunWriter", "Terminated", "write_incoming"]

PART_SIZE = 1
"""Rows pending before a part is written: 1 writes every batch as soon as it is done."""
MERGED_ROW_GROUP = 1024
"""Rows per row group of the merged file (parts are as small as a batch)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run, handled as Ctrl-C is: what is done is merged and kept."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


log = logging.getLogger(__name__)

INCOMING = ".incoming-"
"""The name prefix of a part file written but not yet adopted (:func:`write_incoming`)."""


def write_incoming(parts: str | Path | Location, table: pa.Table, counts: Counts | None = None) -> str:
    """Write rows of a run's schema into its parts folder as one file not yet part of the
    run (whole under a temporary name, then renamed), with their distributions' ``counts``
    for a run that keeps them; returns the file's name, for :meth:`RunWriter.adopt`.

    Ray's actors call this on their own node: ``parts`` must be a folder every node shares,
    or a ``pyarrow.fs`` URI (:class:`~sevis.runs.Location`) every node can write to.

    Raises:
        RunError: the file could not be written (a full disk, a quota, a vanished folder).
    """
    parts = Location.of(parts)
    name = f"{INCOMING}{uuid.uuid4().hex}.parquet"
    tmp = parts / f"{name}.tmp"
    try:
        if counts is not None:
            table = table.replace_schema_metadata(with_distributions(table.schema, counts).metadata)
        pq.write_table(table, tmp.path, filesystem=tmp.fs, **writer_options(table.schema))
        tmp.move_to(parts / name)  # whole or absent, whatever kills us
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.delete()
        raise RunError(
            f"could not write to {parts} ({err.strerror or err}): the images done so far are kept "
            "there; free some space and run again with --resume"
        ) from err
    finally:
        # NOTE Arrow's allocator keeps freed buffers for reuse; hand them back, or the
        # process's footprint grows with the largest part ever written.
        pa.default_memory_pool().release_unused()
    return name


class RunWriter:
    """Writes one run's rows into ``out`` through part files.

    Args:
        out: the Parquet file to write; a name not ending in ``.parquet``: the run folder
            to write (its parts, ``run.json`` and ``failures.jsonl``, never merged). On this
            machine, or a ``pyarrow.fs`` URI (``s3://bucket/run``, a run folder: an object
            store cannot rename, so merging would copy every part once more).
        metadata: the run's settings (its ``images`` and ``failures`` are filled in).
        resume: carry on from ``{out}.parts`` or a finished ``out``.
        overwrite: delete ``out`` and its parts first.
        part_size: rows per part file.
    """

    def __init__(
        self,
        out: str | Path,
        metadata: RunMetadata,
        *,
        resume: bool = False,
        overwrite: bool = False,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < 1:
            raise ValueError(f"part_size must be at least 1, got {part_size}")
        self.out = Location.of(out)
        self.folder = self.out.suffix.lower() != ".parquet"
        if self.out.local is None and not self.folder:
            raise RunError(
                f"{shortened(str(self.out))}: a run at a URI is written as a folder of parts; "
                "name it without .parquet (sevis reads the folder as one run)"
            )
        self.parts = self.out if self.folder else self.out.with_name(self.out.name + ".parts")
        self.metadata = metadata
        self.schema = run_schema(metadata)
        self.part_size = part_size
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_counts: Counts = {}
        self._previous_handler: object = None
        self.done, self.failed = self._open(resume, overwrite)
        self._next_part = len(self._part_files())

    def _open(self, resume: bool, overwrite: bool) -> tuple[set[str], set[str]]:
        if overwrite:
            if self.folder and self.out.is_file():
                raise RunError(f"{self.out} is a file, not a run folder: not deleted; choose another --out")
            if self.folder and self._holds_files(self.out) and not (self.out / "run.json").exists():
                # NOTE never delete a folder sevis did not write (a typo in --out could name one's data)
                raise RunError(f"{self.out} is a folder but no run sevis wrote: not deleted; choose another --out")
            self.parts.delete_tree()
            if not self.folder:
                self.out.delete()
        elif not resume and (self.parts.exists() or self.out.exists()):
            raise RunError(f"{self.out} already exists: pass --resume to finish it or --overwrite to start again")
        settings = self.parts / "run.json"
        if settings.exists():
            try:
                recorded = json.loads(settings.read_bytes())
            except ValueError:
                raise RunError(f"cannot resume {self.out}: {settings} is not readable; pass --overwrite") from None
            self._check(recorded, "its parts were")
        elif self.folder and self.out.exists() and (not self.out.is_dir() or self._holds_files(self.out)):
            raise RunError(
                f"{self.out} is not a run folder sevis is writing (a run written as one file ends in .parquet): "
                "choose another --out"
            )
        elif self.out.exists():  # resuming a finished run: its rows count as done
            before = read_metadata(self.out)
            self._check(before.settings(), "it was")
            self.parts.make_dir()
            self.out.copy_to(self.parts / "part-000000.parquet")
            failures = "".join(json.dumps(f) + "\n" for f in before.failures)
            (self.parts / "failures.jsonl").write_bytes(failures.encode())
        self.parts.make_dir()
        self._drop_incoming()
        settings.write_bytes(self.metadata.to_json().encode())
        done: set[str] = set()
        for part in self._part_files():
            done.update(pq.read_table(part.path, filesystem=part.fs, columns=["path"]).column("path").to_pylist())
        failed = {f["path"] for f in self._failures()}
        if done or failed:
            log.info("resuming: %d images done, %d failed", len(done), len(failed))
        return done, failed

    def _check(self, old: dict[str, Any], what: str) -> None:
        new = self.metadata.settings()
        changed = sorted(k for k in new if old.get(k) != new[k])
        if changed:
            raise RunError(
                f"cannot resume {self.out}: {what} made with other settings ({', '.join(changed)}); "
                "resume with the same settings, or pass --overwrite"
            )

    @staticmethod
    def _holds_files(folder: Location) -> bool:
        try:
            return any(True for _ in folder.entries())
        except OSError:  # not a folder
            return False

    def _part_files(self) -> list[Location]:
        names = self.parts.files()
        return [self.parts / n for n in names if n.startswith("part-") and n.endswith(".parquet")]

    def _drop_incoming(self) -> None:
        """Delete the files written but never adopted (their driver died first) and any
        half-written file: their images are not done."""
        for name in self.parts.files():
            if name.startswith(INCOMING) or (name.startswith(".part-") and name.endswith(".tmp")):
                (self.parts / name).delete()

    def _failures(self) -> list[dict[str, str]]:
        """The failures logged so far. A last line without its newline is an append cut
        short (a full disk, a kill): it is cut off the log, so its image is tried again
        and the next append starts a line of its own. Any other damage is a RunError
        naming the line; nothing else of the log or the parts is thrown away."""
        log_file = self.parts / "failures.jsonl"
        if not log_file.exists():
            return []
        data = log_file.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) < len(data):
            log.warning("the failures log ended in a partial line (an interrupted append); its image is tried again")
            if log_file.local is not None:
                with open(log_file.local, "r+b") as f:
                    f.truncate(len(whole))
            else:
                log_file.write_bytes(whole)
        try:
            return read_failures(log_file)
        except RunError as err:
            raise RunError(f"cannot resume {self.out}: {err}") from None

    def add(self, table: pa.Table, distributions: Counts | None = None) -> None:
        """Rows of the run's schema; written in a part once ``part_size`` are pending.

        Args:
            distributions: the rows' distributions counted over them
                (:meth:`sevis.hooks.forward.BatchResult.distribution_counts`), for a run
                whose metadata keeps them.
        """
        if self.metadata.distributions and table.num_rows and distributions is None:
            raise ValueError("this run keeps distributions: add the rows' counts with them")
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            if self.metadata.distributions and distributions is not None:
                add_counts(self._pending_counts, distributions)
        if self._pending_rows >= self.part_size:
            self.flush()

    def fail(self, path: str, reason: str) -> None:
        """Record an image that could not be read."""
        log.warning("skipped %s: %s", path, reason)
        (self.parts / "failures.jsonl").append_bytes((json.dumps({"path": path, "reason": reason}) + "\n").encode())

    def flush(self) -> None:
        """Write the pending rows as one part file."""
        if not self._pending:
            return
        counts = self._pending_counts if self.metadata.distributions else None
        name = write_incoming(self.parts, pa.concat_tables(self._pending), counts)
        self._pending, self._pending_rows, self._pending_counts = [], 0, {}
        self.adopt(name)

    def adopt(self, name: str) -> None:
        """Take a file :func:`write_incoming` wrote into this run's parts folder (a Ray
        actor's batch) as the run's next part, after the rows added before it.

        Raises:
            RunError: no such file in the parts folder.
        """
        self.flush()
        ok = name.startswith(INCOMING) and "/" not in name and "\\" not in name and name not in (".", "..")
        source = self.parts / name
        if not (ok and source.is_file()):
            raise RunError(f"{name[:100]!r} is no file written for {self.out}'s parts (was the folder shared?)")
        source.move_to(self.parts / f"part-{self._next_part:06d}.parquet")
        self._next_part += 1

    def _part_counts(self) -> Counts:
        """The distributions of every part's images, summed (a run that keeps them)."""
        total: Counts = {}
        for part in self._part_files():
            try:
                counts = read_distributions(part, self.metadata)
            except RunError as err:
                raise RunError(f"cannot finish {self.out}: {err}; run again with --overwrite") from None
            if counts is None:
                raise RunError(
                    f"cannot finish {self.out}: {part.name} of its parts holds no distributions; "
                    "run again with --overwrite"
                )
            add_counts(total, counts)
        return total

    def __enter__(self) -> RunWriter:
        # SIGTERM (a scheduler, `docker stop`, `kill`) is handled as Ctrl-C; signals can
        # only be caught in the main thread.
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Merge at the end of a ``with`` block; after Ctrl-C merge what is done and keep
        the parts for ``--resume``; after any other error leave the parts as they are (files
        written but not adopted are deleted)."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)  # type: ignore[arg-type]
            self._previous_handler = None
        if exc_type is None:
            rows = self.close()
            failed = len(self.metadata.failures)
            log.info("wrote %d images to %s%s", rows, self.out, f" ({failed} unreadable, skipped)" if failed else "")
        elif issubclass(exc_type, KeyboardInterrupt):
            rows = self.close(keep_parts=True)
            how = "terminated" if issubclass(exc_type, Terminated) else "interrupted"
            log.warning(
                "%s: %s holds the %d images done so far; run again with --resume to finish", how, self.out, rows
            )
        else:
            self._drop_incoming()  # never parts: what the run holds is what was adopted

    def close(self, *, keep_parts: bool = False) -> int:
        """Write what is pending and merge the parts into ``out`` (a run folder: its parts are
        the run, nothing is merged); returns its rows.

        Args:
            keep_parts: keep ``{out}.parts`` (after an interruption, for ``--resume``).
        """
        self.flush()
        self.metadata.failures = self._failures()
        self.metadata.images = sum(pq.read_metadata(p.path, filesystem=p.fs).num_rows for p in self._part_files())
        if self.folder:  # the parts are the run
            self._drop_incoming()
            return self.metadata.images
        schema = run_schema(self.metadata)
        if self.metadata.distributions:
            schema = with_distributions(schema, self._part_counts())
        tmp = self.out.with_name(self.out.name + ".tmp")
        assert tmp.local is not None  # a run at a URI is a folder
        # One part in memory at a time, in part order, regrouped into row groups of
        # MERGED_ROW_GROUP rows (parts are as small as a batch).
        try:
            with pq.ParquetWriter(tmp.local, schema, **writer_options(schema)) as writer:
                group: list[pa.RecordBatch] = []
                rows = 0
                for part in self._part_files():
                    for batch in pq.ParquetFile(part.path, filesystem=part.fs).iter_batches(
                        batch_size=MERGED_ROW_GROUP
                    ):
                        group.append(batch.replace_schema_metadata(schema.metadata))
                        rows += batch.num_rows
                        if rows >= MERGED_ROW_GROUP:
                            writer.write_table(pa.Table.from_batches(group, schema))
                            group, rows = [], 0
                if group:
                    writer.write_table(pa.Table.from_batches(group, schema))
        except OSError as err:
            tmp.local.unlink(missing_ok=True)
            raise RunError(
                f"could not write {self.out} ({err.strerror or err}): its {self.metadata.images} images are kept in "
                f"{self.parts}; free some space and run again with --resume"
            ) from err
        tmp.move_to(self.out)
        if keep_parts:
            self._drop_incoming()
        else:
            self.parts.delete_tree()
        return self.metadata.images
