"""A run at a ``pyarrow.fs`` URI: ``extract --out s3://bucket/run`` writes the run folder
into a bucket of a real S3 server (moto's, on 127.0.0.1) through pyarrow's own S3 client,
and everything that takes a run reads it there: the same rows, statistics, distributions and
failures as the same run written on this machine's disk. An object store cannot append or
rename: the failures log is written again whole, a part is adopted by copy and delete.
(Ray's actors writing there themselves: tests/test_ray_engine.py.)"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_run_folders import same_run

import sevis
from sevis.cli import main
from sevis.jobs import extraction
from sevis.jobs.extraction import extract
from sevis.runs import Location, RunWriter, Terminated
from sevis.runs.reader import read_run
from sevis.runs.sample import read_rows
from sevis.runs.schema import open_run_file, read_metadata, run_files


@pytest.fixture(scope="module", params=["tiny_se", "tiny_sge"])
def model(request):
    return request.getfixturevalue(request.param)


def test_a_run_written_to_a_uri_reads_as_the_same_run_on_disk(model, run_photos, bucket, tmp_path):
    key = f"{type(model).__name__}-{id(model)}/run"
    out = extract(model, run_photos, bucket.uri(key), batch_size=1, workers=0, progress=False)
    assert out == bucket.uri(key)  # given back as it was given
    local = extract(model, run_photos, tmp_path / "run", batch_size=1, workers=0, progress=False)
    # a part per image, the settings and the failures log; nothing hidden left behind
    assert bucket.names(key) == ["failures.jsonl", *(f"part-{i:06d}.parquet" for i in range(5)), "run.json"]
    assert [p.name for p in run_files(out)] == [p.name for p in run_files(local)]
    at_uri, on_disk = read_run(out, cache=False), read_run(local, cache=False)
    same_run(at_uri, on_disk)
    assert [f["path"] for f in at_uri.failures] == ["cup/broken.jpg"]
    assert isinstance(at_uri.path, Location) and at_uri.path.name == "run"
    kind = next(iter(at_uri.stats))
    layer = at_uri.stats[kind].layers[-1]
    assert [r.names for r in at_uri.iter_layer(layer)] == [r.names for r in on_disk.iter_layer(layer)]
    assert open_run_file(out).read().equals(open_run_file(local).read())
    a, b = read_rows(out, kind, max_rows=3, seed=1), read_rows(local, kind, max_rows=3, seed=1)
    assert a[1] == b[1] and all((a[0][k] == b[0][k]).all() for k in a[0])
    # cached by URI: read again from the cache, the same statistics
    first, again = read_run(out), read_run(out)
    assert first.cache_file is not None and again.cache_file == first.cache_file
    assert b"testing" not in first.cache_file.read_bytes()  # no filesystem, so no key, in the cache
    same_run(again, on_disk)


def test_a_run_at_a_uri_resumes_after_sigterm_and_is_overwritten(tiny_se, run_photos, bucket, monkeypatch):
    """Terminated after its second image: the parts at the URI hold the images done; a
    resume does only the rest, and the run equals an uninterrupted one."""
    whole = extract(tiny_se, run_photos, bucket.uri("whole"), batch_size=1, workers=0, progress=False)
    forward, calls = extraction.forward_batch, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the probe, two images, then SIGTERM as the third runs
            raise Terminated()
        return forward(*args, **kwargs)

    monkeypatch.setattr(extraction, "forward_batch", dying)
    out = bucket.uri("stopped")
    with pytest.raises(Terminated):
        extract(tiny_se, run_photos, out, batch_size=1, workers=0, progress=False)
    assert read_metadata(out).images == 2
    monkeypatch.setattr(extraction, "forward_batch", forward)
    calls.clear()
    extract(tiny_se, run_photos, out, batch_size=1, workers=0, resume=True, progress=False)
    assert open_run_file(out).read().equals(open_run_file(whole).read())
    assert read_metadata(out).failures == read_metadata(whole).failures  # the log written again whole
    with pytest.raises(sevis.RunError, match="already exists: pass --resume"):
        extract(tiny_se, run_photos, out, workers=0, progress=False)
    with pytest.raises(sevis.RunError, match=r"cannot resume .*other settings \(seed\)"):
        extract(tiny_se, run_photos, out, seed=3, resume=True, workers=0, progress=False)
    extract(tiny_se, run_photos, out, overwrite=True, batch_size=8, workers=0, progress=False)
    assert bucket.names("stopped") == ["failures.jsonl", "part-000000.parquet", "run.json"]
    assert read_metadata(out).images == 5


def test_a_uri_is_a_folder_and_its_messages_keep_its_keys(tiny_se, run_photos, bucket):
    with pytest.raises(sevis.RunError, match="a run at a URI is written as a folder of parts") as err:
        extract(tiny_se, run_photos, bucket.uri("run.parquet", secret="SECRET-KEY"), workers=0, progress=False)
    assert "SECRET" not in str(err.value) and "endpoint_override" not in str(err.value)
    assert "s3://runs/run.parquet" in str(err.value)
    with pytest.raises(sevis.RunError, match="cannot open nosuch://bucket/run") as err:
        read_run("nosuch://user:SECRET-KEY@bucket/run")
    assert "SECRET" not in str(err.value)
    with pytest.raises(sevis.RunError, match="nothing-here: not a readable Parquet file .*does not exist"):
        read_run(bucket.uri("nothing-here"), cache=False)
    bucket.fs.create_dir(f"{bucket.name}/empty")
    with pytest.raises(sevis.RunError, match="empty: a folder without Parquet files is no run"):
        read_run(bucket.uri("empty"), cache=False)


def test_a_writer_s_files_at_a_uri_are_adopted_in_order(tiny_se, run_photos, bucket):
    """What Ray's actors do: files written into the parts folder at the URI, adopted by the
    driver in its own order (an object store's rename is a copy and a delete)."""
    from sevis.runs.writer import write_incoming

    local = extract(tiny_se, run_photos, bucket.uri("source"), batch_size=5, workers=0, progress=False)
    table = open_run_file(local).read()
    metadata = read_metadata(local)
    with RunWriter(bucket.uri("adopted"), metadata) as writer:
        second = write_incoming(writer.parts, table.slice(3))
        first = write_incoming(writer.parts, table.slice(0, 3))
        left = write_incoming(writer.parts, table.slice(1, 1))  # never adopted: deleted at the end
        assert left in bucket.names("adopted")
        writer.adopt(first)
        writer.adopt(second)
        with pytest.raises(sevis.RunError, match="is no file written for"):
            writer.adopt("../source/part-000000.parquet")
    assert bucket.names("adopted") == ["part-000000.parquet", "part-000001.parquet", "run.json"]
    assert open_run_file(bucket.uri("adopted")).read().equals(table)


def test_commands_that_take_a_run_take_one_at_a_uri(tiny_se, run_photos, bucket, tmp_path):
    """`sevis report` and `sevis ablate` on a run at a URI: the numbers of the same run on disk."""
    at_uri = extract(tiny_se, run_photos, bucket.uri("commands"), batch_size=1, workers=0, progress=False)
    local = extract(tiny_se, run_photos, tmp_path / "commands", batch_size=1, workers=0, progress=False)
    for name, run in (("uri", at_uri), ("disk", local)):
        assert main(["report", str(run), "--out", str(tmp_path / f"{name}.html"), "--classes", "cat", "cup"]) == 0
        assert main(["ablate", str(run), "--out", str(tmp_path / f"{name}.csv"), "--workers", "0"]) == 0
    tables = [pd.read_csv(tmp_path / f"{n}.csv") for n in ("uri", "disk")]
    assert set(tables[0].source) == {"s3://runs/commands"}  # where the images came from, without its keys
    pd.testing.assert_frame_equal(tables[0].drop(columns="source"), tables[1].drop(columns="source"))
    pages = [(tmp_path / f"{n}.html").read_text().split("<body", 1)[1] for n in ("uri", "disk")]
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # each chart's element, drawn anew
    assert re.sub(uuid4, "ID", pages[0]) == re.sub(uuid4, "ID", pages[1])
    assert "testing" not in pages[0]


def test_sevis_extract_writes_to_a_uri(run_photos, bucket, capsys):
    """The command line as the README shows it: `sevis extract DATA --out s3://…`."""
    uri = bucket.uri("from-the-command-line")
    assert main(["extract", str(run_photos), "--out", uri, "--weights", "untrained", "--workers", "0", "--quiet"]) == 0
    metadata = read_metadata(uri)
    assert (metadata.model, metadata.untrained, metadata.images) == ("se_resnet50", True, 5)
    assert "part-000000.parquet" in bucket.names("from-the-command-line")
    assert "testing" not in capsys.readouterr().err  # what it said named no key
