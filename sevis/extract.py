"""``sevis extract``: a dataset through a model, one Parquet row per image.

DATA is a folder of class-named subfolders (the ImageFolder layout: labels from the
folder names), a flat folder (labels = the predicted class), or a zip of either.
Decoding runs in DataLoader workers so it overlaps the forward pass.

Rows are written in part files of ``{out}.parts/`` (each written whole, then renamed),
so a run killed at any moment loses at most the part in progress; ``resume=True``
carries on from the parts, and the final file is the same as an uninterrupted run's.
Ctrl-C writes what is done into ``out`` (a valid, partial file) and keeps the parts.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .capture import capture
from .errors import ImageError
from .images import decode_image, model_view, normalise
from .models import model_info
from .runs import METADATA_KEY, batch_table, run_schema
from .stats import mask_summary

__all__ = ["Item", "discover", "extract"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
PART_SIZE = 1024  # images per part file


@dataclass(frozen=True)
class Item:
    """One image of a dataset: its path inside DATA and its folder label, if any."""

    path: str
    label: str | None


def _is_image_name(path: PurePosixPath) -> bool:
    return (
        path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
        and "__MACOSX" not in path.parts
    )


def discover(data: str | Path, per_class: int | None = None, seed: int = 0) -> list[Item]:
    """The images of ``data`` in path order, labelled by their folder.

    Files in sub-folders get their folder's name as label; files at the top of a flat
    folder get none. With ``per_class``, at most that many images per label, sampled
    with ``seed`` (the same sample every time).
    """
    data = Path(data)
    if zipfile.is_zipfile(data):
        with zipfile.ZipFile(data) as archive:
            names = [PurePosixPath(i.filename) for i in archive.infolist() if not i.is_dir()]
    elif data.is_dir():
        names = [PurePosixPath(p.relative_to(data).as_posix()) for p in data.rglob("*") if p.is_file()]
    else:
        raise ValueError(f"{data}: not a folder or a zip archive")
    names = sorted(n for n in names if _is_image_name(n))
    if not names:
        raise ValueError(f"{data}: no image files (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    # NOTE one wrapping folder (data/cats/1.jpg) is common in zips: labels are always the
    # file's own folder, and files with no folder of their own are unlabelled.
    items = [Item(str(n), n.parent.name if len(n.parts) > 1 else None) for n in names]
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        by_label: dict[str | None, list[Item]] = {}
        for item in items:
            by_label.setdefault(item.label, []).append(item)
        rng = random.Random(seed)
        items = sorted(
            (i for group in by_label.values() for i in (rng.sample(group, per_class) if len(group) > per_class else group)),
            key=lambda i: i.path,
        )
    return items


class _Images(Dataset):
    """Reads, decodes and crops one image; errors come back as text, not exceptions."""

    def __init__(self, data: Path, items: Sequence[Item], data_config: dict[str, Any]) -> None:
        self.data, self.items, self.data_config = data, list(items), data_config
        self._zip: zipfile.ZipFile | None = None  # opened lazily, once per worker

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, path: str) -> bytes:
        if self.data.is_dir():
            return (self.data / path).read_bytes()
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.data)
        return self._zip.read(path)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.items[index].path
        try:
            image = decode_image(self._read(path))
        except ImageError as err:
            return index, None, str(err)
        except (OSError, zipfile.BadZipFile, KeyError) as err:
            return index, None, f"cannot be read ({err})"
        view = model_view(self.data_config, image)
        return index, torch.from_numpy(np.asarray(view).copy()).permute(2, 0, 1), None


def _collate(samples):
    return samples


def _load_parts(parts: Path) -> tuple[set[str], list[dict[str, str]]]:
    done: set[str] = set()
    for part in sorted(parts.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
    failures = []
    log = parts / "failures.jsonl"
    if log.exists():
        failures = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return done, failures


def _write_part(parts: Path, table: pa.Table) -> None:
    index = len(list(parts.glob("part-*.parquet")))
    tmp = parts / f".part-{index:06d}.tmp"
    pq.write_table(table, tmp)
    tmp.rename(parts / f"part-{index:06d}.parquet")  # whole or absent, whatever kills us
    # NOTE Arrow's allocator keeps freed buffers for reuse; hand them back, or the
    # process's footprint grows with the largest part ever written.
    pa.default_memory_pool().release_unused()


def _merge(parts: Path, out: Path, schema: pa.Schema) -> None:
    """Concatenate the parts into ``out`` (through a temporary file), in part order,
    one part in memory at a time."""
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for part in sorted(parts.glob("part-*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=256):
                writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    tmp.replace(out)


def extract(
    model: nn.Module,
    data: str | Path,
    out: str | Path,
    *,
    batch_size: int = 32,
    workers: int = 2,
    per_class: int | None = None,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    part_size: int = PART_SIZE,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Path:
    """Extract ``data`` with ``model`` (loaded by :func:`sevis.load_model`) into ``out``.

    Args:
        batch_size: images per forward pass.
        workers: DataLoader processes decoding images (0: in this process).
        per_class, seed: sample at most ``per_class`` images per label (see :func:`discover`).
        layers: layer names to keep (default all).
        resume: carry on from ``{out}.parts`` or a finished ``out``.
        overwrite: delete ``out`` and its parts first.
        part_size: images per part file (what a kill can lose at most).

    Returns:
        ``out``, the Parquet file (schema in :mod:`sevis.runs`).
    """
    data, out = Path(data), Path(out)
    parts = out.with_name(out.name + ".parts")
    info = model_info(model)
    run, se_layers, sge_layers, todo = _start(model, data, out, per_class, seed, layers, resume, overwrite, log)
    try:
        _run(model, data, todo, info, parts, se_layers, sge_layers, batch_size, workers, progress, part_size, log)
    except KeyboardInterrupt:
        _finish(parts, out, run, se_layers, sge_layers, keep_parts=True)
        log(f"interrupted: {out} holds the images done so far; run again with --resume to finish")
        raise
    rows = _finish(parts, out, run, se_layers, sge_layers, keep_parts=False)
    log(f"wrote {rows} images to {out}" + (f" ({len(run['failures'])} unreadable, skipped)" if run["failures"] else ""))
    return out


def _start(model, data: Path, out: Path, per_class, seed, layers, resume, overwrite, log):
    """What both engines do first: the run's settings and layer sizes, the output
    folder made ready, and the images still to do."""
    info = model_info(model)
    items = discover(data, per_class, seed)
    with torch.inference_mode(), capture(model, layers) as probe:
        model(torch.zeros(1, 3, *info.data_config["input_size"][-2:], device=next(model.parameters()).device))
    se_layers = {k: v.shape[1] for k, v in probe.excitations.items()}
    sge_layers = {k: v.shape[1] for k, v in probe.masks.items()}
    run = {
        "model": info.name, "weights": info.weights, "weights_sha256": info.weights_sha256,
        "untrained": info.untrained, "sevis_version": __version__, "data_config": info.data_config,
        "se_layers": list(se_layers), "sge_layers": list(sge_layers), "source": str(data),
        "labels": "folder" if any(i.label is not None for i in items) else "predicted",
        "per_class": per_class, "seed": seed, "layers": list(layers) if layers is not None else None,
    }
    parts = out.with_name(out.name + ".parts")
    _prepare(out, parts, run, resume, overwrite)
    done, failures = _load_parts(parts)
    failed = {f["path"] for f in failures}
    todo = [i for i in items if i.path not in done and i.path not in failed]
    if done or failures:
        log(f"resuming: {len(done)} images done, {len(failures)} failed, {len(todo)} to go")
    return run, se_layers, sge_layers, todo


def _prepare(out: Path, parts: Path, run: dict, resume: bool, overwrite: bool) -> None:
    if overwrite:
        shutil.rmtree(parts, ignore_errors=True)
        out.unlink(missing_ok=True)
    elif not resume and (parts.exists() or out.exists()):
        raise FileExistsError(f"{out} already exists: pass --resume to finish it or --overwrite to start again")
    parts.mkdir(parents=True, exist_ok=True)
    settings = parts / "run.json"
    now = json.loads(json.dumps(run))  # tuples become lists, as in the saved copy
    if settings.exists():
        before = json.loads(settings.read_text())
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            raise ValueError(f"cannot resume {out}: it was made with other settings ({', '.join(changed)})")
    elif out.exists():  # resuming a finished (or Ctrl-C'd, parts removed) run: its rows count as done
        shutil.copy(out, parts / "part-000000.parquet")
        meta = json.loads(pq.read_schema(out).metadata[METADATA_KEY])
        (parts / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in meta.get("failures", [])))
    settings.write_text(json.dumps(run))


def _run(model, data, todo, info, parts, se_layers, sge_layers, batch_size, workers, progress, part_size, log) -> None:
    from tqdm.auto import tqdm

    if not todo:
        return
    loader = DataLoader(
        _Images(data, todo, info.data_config), batch_size=batch_size, num_workers=workers,
        collate_fn=_collate, persistent_workers=False, prefetch_factor=4 if workers else None,
    )
    schema = run_schema(se_layers, sge_layers, {})
    layers = [*se_layers, *sge_layers]
    pending: list[pa.Table] = []
    pending_rows = 0
    bar = tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    with open(parts / "failures.jsonl", "a") as failure_log:
        for samples in loader:
            good = [(i, t) for i, t, err in samples if err is None]
            for i, _, err in samples:
                if err is not None:
                    log(f"skipped {todo[i].path}: {err}")
                    failure_log.write(json.dumps({"path": todo[i].path, "reason": err}) + "\n")
            if good:
                items = [todo[i] for i, _ in good]
                pending.append(_forward(model, info, schema, layers, items, torch.stack([t for _, t in good])))
                pending_rows += len(good)
            if pending_rows >= part_size:
                failure_log.flush()
                _write_part(parts, pa.concat_tables(pending))
                pending, pending_rows = [], 0
            bar.update(len(samples))
        failure_log.flush()
        if pending:
            _write_part(parts, pa.concat_tables(pending))
    bar.close()


def _forward(model, info, schema, layers, items, views) -> pa.Table:
    x = normalise(info.data_config, views).to(next(model.parameters()).device)
    with torch.inference_mode(), capture(model, layers) as cap:
        logits = model(x)
    probs = logits.float().softmax(1)
    top_probs, top_index = probs.topk(min(5, probs.shape[1]), dim=1)
    top_classes = [[info.class_names[j] for j in row] for row in top_index.tolist()]
    summaries = {k: mask_summary(v) for k, v in cap.masks.items()}
    return batch_table(
        schema,
        paths=[i.path for i in items],
        labels=[i.label if i.label is not None else top[0] for i, top in zip(items, top_classes)],
        label_sources=["folder" if i.label is not None else "predicted" for i in items],
        top_classes=top_classes,
        top_probs=top_probs.cpu().numpy(),
        excitations={k: v.float().cpu().numpy() for k, v in cap.excitations.items()},
        mask_means={k: m for k, (m, _) in summaries.items()},
        mask_vars={k: v for k, (_, v) in summaries.items()},
    )


def _finish(parts: Path, out: Path, run: dict, se_layers, sge_layers, keep_parts: bool) -> int:
    _, failures = _load_parts(parts)
    run["failures"] = failures
    run["images"] = sum(pq.ParquetFile(p).metadata.num_rows for p in parts.glob("part-*.parquet"))
    _merge(parts, out, run_schema(se_layers, sge_layers, run))
    if not keep_parts:
        shutil.rmtree(parts)
    return run["images"]
