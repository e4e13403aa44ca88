"""A run as a folder of Parquet files, read like one file: written by `extract` without a
final merge (its parts are the run), or files as Ray writes them natively (names of their
own, no run.json); statistics, rows, samples, chance bands, distributions, failures, the
cache and the commands that take a run are those of the same run merged into one file."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sevis
from sevis.cli import main
from sevis.jobs.extraction import extract
from sevis.runs.reader import read_run
from sevis.runs.sample import null_bands, read_rows
from sevis.runs.schema import open_run_file, read_metadata, run_files


@pytest.fixture(scope="module", params=["tiny_se", "tiny_sge"])
def pair(request, run_photos, tmp_path_factory) -> tuple[Path, Path]:
    """The same extraction written as one file and as a folder (a part per image)."""
    model = request.getfixturevalue(request.param)
    root = tmp_path_factory.mktemp(request.param)
    one = extract(model, run_photos, root / "run.parquet", batch_size=1, workers=0, progress=False)
    folder = extract(model, run_photos, root / "run", batch_size=1, workers=0, progress=False)
    return one, folder


def same_run(a: sevis.Run, b: sevis.Run) -> None:
    assert a.metadata.settings() == b.metadata.settings()
    assert (a.metadata.images, a.metadata.failures) == (b.metadata.images, b.metadata.failures)
    assert list(a.stats) == list(b.stats)
    for kind, stats in a.stats.items():
        pd.testing.assert_frame_equal(stats.to_frame(), b.stats[kind].to_frame(), rtol=1e-6)
        for layer in stats.layers:
            assert stats.distributions(layer) == b.stats[kind].distributions(layer)
            if stats.distributions(layer):
                pd.testing.assert_frame_equal(stats.distribution_frame(layer), b.stats[kind].distribution_frame(layer))


def test_a_folder_run_is_its_parts_and_reads_as_the_merged_file(pair):
    one, folder = pair
    assert folder.is_dir() and len(run_files(folder)) == 5  # a part per image read; no merged file
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".parquet") == ["failures.jsonl", "run.json"]
    a, b = read_run(one, cache=False), read_run(folder, cache=False)
    same_run(a, b)
    assert b.metadata.images == 5 and [f["path"] for f in b.failures] == ["cup/broken.jpg"]
    if b.metadata.distributions:  # SGE: the parts' counts summed
        assert any(b.stats["sge"].distributions(layer) for layer in b.stats["sge"].layers)
    kind = next(iter(a.stats))
    layer = a.stats[kind].layers[-1]
    rows_a, rows_b = list(a.iter_layer(layer)), list(b.iter_layer(layer))
    assert [r.names for r in rows_a] == [r.names for r in rows_b]
    np.testing.assert_array_equal(
        np.concatenate([r.values for r in rows_a]), np.concatenate([r.values for r in rows_b])
    )
    sample_a, sample_b = read_rows(one, kind, max_rows=3, seed=1), read_rows(folder, kind, max_rows=3, seed=1)
    assert sample_a[1] == sample_b[1] and all(np.array_equal(sample_a[0][k], sample_b[0][k]) for k in sample_a[0])
    bands_a, bands_b = null_bands(one, kind, permutations=19), null_bands(folder, kind, permutations=19)
    assert bands_a == bands_b


def test_files_as_ray_writes_them_are_a_run_in_the_order_of_their_names(pair, tmp_path):
    """Names of their own (a block id each, as Ray Data's write_parquet gives), no run.json,
    no failures log: the rows in the order of the names."""
    one, folder = pair
    native = tmp_path / "native"
    native.mkdir()
    parts = [part.local for part in run_files(folder)]
    for i, part in enumerate(parts):
        shutil.copy(part, native / f"{i:03d}_{uuid.uuid4().hex}_000000.parquet")
    run = read_run(native, cache=False)
    assert run.metadata.images == 5 and run.failures == []  # no log: none known
    merged = read_run(one, cache=False)
    for kind, stats in run.stats.items():
        pd.testing.assert_frame_equal(stats.to_frame(), merged.stats[kind].to_frame(), rtol=1e-6)
    paths = open_run_file(native).read(columns=["path"]).column("path").to_pylist()
    assert paths == pq.read_table(one, columns=["path"]).column("path").to_pylist()


def test_a_folder_that_is_not_one_run_is_refused_by_name(pair, run_photos, tmp_path, tiny_se, tiny_sge):
    one, folder = pair
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    other = tiny_sge if read_metadata(one).model == "tiny_se" else tiny_se
    stranger = extract(other, run_photos, tmp_path / "other.parquet", workers=0, progress=False)
    shutil.copy(stranger, mixed / "part-999999.parquet")
    with pytest.raises(sevis.RunError, match="part-999999.parquet was made with other settings than part-000000"):
        read_run(mixed, cache=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no run here")
    with pytest.raises(sevis.RunError, match="a folder without Parquet files is no run"):
        read_run(empty, cache=False)
    (mixed / "part-999999.parquet").write_bytes(b"PAR1 and nothing else")
    with pytest.raises(sevis.RunError, match="part-999999.parquet: not a readable Parquet file"):
        read_run(mixed, cache=False)


def test_a_folder_run_is_cached_until_a_part_changes(pair, tmp_path):
    _, folder = pair
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    first = read_run(copy)
    assert first.cache_file is not None and first.cache_file.exists()
    again = read_run(copy)
    assert again.cache_file == first.cache_file
    part = run_files(copy)[-1].local
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table, table]), part)  # one image twice: another run
    changed = read_run(copy)
    assert changed.cache_file != first.cache_file and changed.metadata.images == first.metadata.images + 1


def test_a_folder_run_resumes_and_is_overwritten_but_no_other_folder_is(tiny_se, run_photos, tmp_path):
    out = extract(tiny_se, run_photos, tmp_path / "run", batch_size=2, workers=0, progress=False)
    before = {p.name: p.local.stat().st_mtime_ns for p in run_files(out)}
    extract(tiny_se, run_photos, out, resume=True, workers=0, progress=False)  # finished: nothing to do
    assert {p.name: p.local.stat().st_mtime_ns for p in run_files(out)} == before
    with pytest.raises(sevis.RunError, match="already exists: pass --resume"):
        extract(tiny_se, run_photos, out, workers=0, progress=False)
    extract(tiny_se, run_photos, out, overwrite=True, batch_size=8, workers=0, progress=False)
    assert len(run_files(out)) == 1 and read_run(out, cache=False).metadata.images == 5
    mine = tmp_path / "photos"
    shutil.copytree(run_photos, mine)
    with pytest.raises(sevis.RunError, match="is a folder but no run sevis wrote: not deleted"):
        extract(tiny_se, run_photos, mine, overwrite=True, workers=0, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in run_photos.iterdir())
    with pytest.raises(sevis.RunError, match="is not a run folder sevis is writing"):
        extract(tiny_se, run_photos, mine, resume=True, workers=0, progress=False)
    a_file = tmp_path / "run.v1"  # a name without .parquet that is a file: not taken for a folder
    a_file.write_bytes(b"something of the user's")
    with pytest.raises(sevis.RunError, match=r"a run written as one file ends in \.parquet"):
        extract(tiny_se, run_photos, a_file, resume=True, workers=0, progress=False)
    with pytest.raises(sevis.RunError, match="is a file, not a run folder: not deleted"):
        extract(tiny_se, run_photos, a_file, overwrite=True, workers=0, progress=False)
    assert a_file.read_bytes() == b"something of the user's"


def test_the_parts_of_a_finished_run_resumed_count_each_failure_once(tiny_se, run_photos, tmp_path):
    """Resuming a finished one-file run copies it as the first part and its failures to the
    log: read as a folder, the parts list each failure once."""
    from sevis.runs.writer import RunWriter

    out = extract(tiny_se, run_photos, tmp_path / "run.parquet", workers=0, progress=False)
    writer = RunWriter(out, read_metadata(out), resume=True)
    folder = writer.parts.local
    assert (folder / "failures.jsonl").read_text().count("broken.jpg") == 1
    assert read_metadata(folder).failures == read_metadata(out).failures == read_run(out, cache=False).failures
    assert len(read_metadata(folder).failures) == 1


def test_the_dashboard_s_confined_reading_refuses_a_folder_run(pair):
    _, folder = pair
    with pytest.raises(sevis.RunError, match="is a run folder: here a run is opened as one file"):
        read_run(folder, within=[str(folder.parent)])


def test_commands_that_take_a_run_take_a_folder_run(tiny_se, run_photos, tmp_path):
    """`sevis report` and `sevis ablate` on a folder run: the report's numbers and the
    ablation's table are those of the merged file's."""
    one = extract(tiny_se, run_photos, tmp_path / "run.parquet", batch_size=1, workers=0, progress=False)
    folder = extract(tiny_se, run_photos, tmp_path / "run", batch_size=1, workers=0, progress=False)
    for run in (one, folder):
        html = tmp_path / f"{run.name}.html"
        assert main(["report", str(run), "--out", str(html), "--classes", "cat", "cup"]) == 0
        assert main(["ablate", str(run), "--out", str(tmp_path / f"{run.name}.csv"), "--workers", "0"]) == 0
    tables = [pd.read_csv(tmp_path / f"{r.name}.csv") for r in (one, folder)]
    assert [set(t.source) for t in tables] == [{str(one)}, {str(folder)}]  # where the images came from
    pd.testing.assert_frame_equal(tables[0].drop(columns="source"), tables[1].drop(columns="source"))
    pages = [(tmp_path / f"{r.name}.html").read_text().split("<body", 1)[1] for r in (one, folder)]
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # each chart's element, drawn anew
    pages = [re.sub(uuid4, "ID", page) for page in pages]
    assert pages[0].replace("run.parquet", "run") == pages[1]
