"""The Ray engine keeps the local engine's promises: an interrupted run (kill -9 at random
points, SIGTERM, a full disk) loses at most the batch in flight, says truthfully what it
kept, and resumes to the uninterrupted rows; other settings are refused before Ray starts.
Its actors write the parts; the driver only adopts them (no row passes through it).

Ray's actors load the model by name in their own processes, so these runs use SE-ResNet-50
from a checkpoint file in the SENet layout (the tiny test networks live in this process only).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, remount, small_disk
from test_extract import assert_same_rows, part_rows, rows

import sevis
from sevis.jobs.extraction import extract

# NOTE each test starts Ray and runs the real SE-ResNet-50 several times (up to 4 runs and
# resumes): past the 10 minutes of the suite's limit with five CPU-bound processes beside it.
# The limit is a guard against hangs, not a speed target.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

RAY_KILL_SCRIPT = """
import os, signal, sys
# NOTE a child inherits ignored signals (`nohup`, `&` in a script, CI runners that ignore
# SIGINT): the signals this test sends must do what they do in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.path[:0] = [{root!r}]
import pyarrow.parquet as pq
from sevis.jobs.ray_engine import extract_ray
from sevis.runs.writer import RunWriter
adopt, seen = RunWriter.adopt, []
def dying_adopt(self, name):
    seen.append(pq.ParquetFile((self.parts / name).path, filesystem=self.parts.fs).metadata.num_rows)
    if len(seen) == {after}:  # the actor wrote this batch's file; the driver has not adopted it
        print(f"rows written before: {{sum(seen[:-1])}}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.{signal})
    return adopt(self, name)
RunWriter.adopt = dying_adopt
extract_ray("se_resnet50", {weights!r}, {data!r}, {out!r}, batch_size=1, workers=1, part_size=1,
            ray_init={{"num_cpus": 2}})
"""


def ray_until_killed(weights, data, out, sig: str, after: int) -> tuple[subprocess.CompletedProcess, int]:
    """Run the Ray engine in a process that sends itself ``sig`` as it is about to adopt the
    ``after``-th file its actors wrote; returns the process and the rows adopted before."""
    script = RAY_KILL_SCRIPT.format(
        root=str(ROOT), weights=str(weights), data=str(data), out=str(out), signal=sig, after=after
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    written = [line for line in done.stderr.splitlines() if line.startswith("rows written before: ")]
    assert written, done.stderr[-2000:]
    return done, int(written[-1].rsplit(" ", 1)[1])


@pytest.fixture(scope="module")
def whole(senet_file, image_folder, tmp_path_factory) -> list[dict]:
    """The uninterrupted run's rows (local engine, batch 1)."""
    model = sevis.load_model("se_resnet50", str(senet_file))
    out = tmp_path_factory.mktemp("whole") / "whole.parquet"
    return rows(extract(model, image_folder, out, batch_size=1, workers=0, progress=False))


def resume_with_ray(senet_file, image_folder, out) -> None:
    import ray  # requirements-dev.txt installs it: a missing Ray must fail, not skip

    from sevis.jobs.ray_engine import extract_ray

    try:
        extract_ray(
            "se_resnet50", str(senet_file), image_folder, out, batch_size=2, workers=1, resume=True,
            ray_init={"num_cpus": 2},
        )  # fmt: skip
    finally:
        ray.shutdown()


def test_ray_killed_at_random_points_keeps_every_finished_batch(senet_file, image_folder, tmp_path, whole):
    paths = [r["path"] for r in whole]
    rng = np.random.default_rng(7)
    for trial, after in enumerate(sorted(rng.choice(np.arange(1, 8), size=2, replace=False))):
        out = tmp_path / f"killed-{trial}.parquet"
        done, written = ray_until_killed(senet_file, image_folder, out, "SIGKILL", after=int(after))
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
        # Killed adopting its k-th file: every file adopted before it is a part, in order; the
        # k-th, written by the actor, is not part of the run (its images are done again).
        assert part_rows(out) == paths[:written], (after, written, part_rows(out))
        assert not out.exists()
        assert list(out.with_name(out.name + ".parts").glob(".incoming-*"))  # written, never adopted
        if trial == 0:
            resume_with_ray(senet_file, image_folder, out)
        else:  # parts written by Ray, finished by the local engine: one format, one writer
            model = sevis.load_model("se_resnet50", str(senet_file))
            extract(model, image_folder, out, batch_size=1, workers=0, resume=True, progress=False)
        assert_same_rows(rows(out), whole, rtol=1e-4)  # none lost, none twice
        assert not out.with_name(out.name + ".parts").exists()


def test_ray_writes_a_run_folder_its_parts_the_run_and_resumes_it_after_kill_9(
    senet_file, image_folder, tmp_path, whole
):
    """--out without .parquet: the actors' files are the run (nobody merges them); a driver
    killed as it is about to adopt a file leaves that file out, and the resumed run reads
    as the local engine's file, row for row."""
    from sevis.runs.schema import open_run_file, run_files

    out = tmp_path / "run"
    done, before = ray_until_killed(senet_file, image_folder, out, "SIGKILL", after=3)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert len(run_files(out)) == 2 and before == 2  # two adopted; the third written but not adopted
    assert any(p.name.startswith(".incoming-") for p in out.iterdir())
    resume_with_ray(senet_file, image_folder, out)
    assert_same_rows(open_run_file(out).read().to_pylist(), whole, rtol=1e-4)
    assert not out.with_name(out.name + ".parquet").exists() and not any(p.name.startswith(".") for p in out.iterdir())
    run = sevis.read_run(out, cache=False)
    assert run.metadata.images == len(whole) and run.stats["se"].count() == len(whole)


def test_ray_actors_write_the_parts_at_a_uri_themselves(senet_file, image_folder, bucket, whole):
    """--out s3://bucket/run: each actor writes its batches' files into the bucket (a real S3
    server on 127.0.0.1, through pyarrow's S3 client, from the actors' processes), the driver
    adopts them there; the run reads as the local engine's rows."""
    import ray

    from sevis.jobs.ray_engine import extract_ray
    from sevis.runs.schema import open_run_file

    out = bucket.uri("ray-run")
    try:
        done = extract_ray(
            "se_resnet50", str(senet_file), image_folder, out, batch_size=2, workers=2, ray_init={"num_cpus": 2}
        )
    finally:
        ray.shutdown()
    assert done == out
    names = bucket.names("ray-run")  # 8 files in batches of 2, the broken one in the third: nothing hidden left
    assert names == ["failures.jsonl", *(f"part-{i:06d}.parquet" for i in range(4)), "run.json"]
    assert_same_rows(open_run_file(out).read().to_pylist(), whole, rtol=1e-4)
    assert sevis.read_run(out, cache=False).metadata.images == len(whole)


def test_ray_terminated_keeps_what_was_done_and_says_so(senet_file, image_folder, tmp_path, whole):
    out = tmp_path / "terminated.parquet"
    done, written = ray_until_killed(senet_file, image_folder, out, "SIGTERM", after=4)
    assert done.returncode != 0 and "terminated: " in done.stderr, done.stderr[-2000:]
    assert f"holds the {written} images done so far; run again with --resume" in done.stderr
    assert written > 0 and [r["path"] for r in rows(out)] == [r["path"] for r in whole][:written]
    resume_with_ray(senet_file, image_folder, out)
    assert_same_rows(rows(out), whole, rtol=1e-4)


def test_ray_on_a_full_disk_says_so_and_resumes_after_space_is_freed(senet_file, image_folder, tmp_path, whole):
    import ray

    from sevis.jobs.ray_engine import extract_ray

    with small_disk(tmp_path / "disk", "256k") as disk:
        out = disk / "run.parquet"
        with pytest.raises(sevis.RunError, match=r"could not write to .*No space left on device.*--resume"):
            try:
                extract_ray(
                    "se_resnet50", str(senet_file), image_folder, out, batch_size=1, workers=1, part_size=1,
                    ray_init={"num_cpus": 2},
                )  # fmt: skip
            finally:
                ray.shutdown()
        kept = part_rows(out)
        assert 0 < len(kept) < len(whole) and kept == [r["path"] for r in whole][: len(kept)]
        assert not list(out.with_name("run.parquet.parts").glob("*.tmp"))  # no half-written part
        remount(disk, "64m")
        resume_with_ray(senet_file, image_folder, out)
        assert_same_rows(rows(out), whole, rtol=1e-4)


def test_ray_refuses_other_settings_before_starting(senet_file, image_folder, tmp_path):
    import ray

    from sevis.jobs.ray_engine import extract_ray

    model = sevis.load_model("se_resnet50", str(senet_file))
    out = extract(model, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    before = out.read_bytes()
    with pytest.raises(sevis.RunError, match=r"other settings \(attention, dims, layers\)"):
        extract_ray("se_resnet50", str(senet_file), image_folder, out, layers=["SE_5_2"], resume=True)
    assert not ray.is_initialized()  # refused from the settings alone
    assert out.read_bytes() == before and pq.read_table(out).num_rows == len(rows(out))


def test_ray_cluster_of_several_nodes_on_loopback_loses_a_node_and_resumes(senet_file, image_folder, tmp_path, whole):
    """A head and two worker nodes started with `ray start`, every one on 127.0.0.1 (in a
    network namespace of the test's own, where loopback is the only address: see
    tests/ray_cluster.py); once two parts are adopted, a worker node holding an actor is
    killed (SIGKILL to its processes) and the driver with it; the same extraction resumed on
    the nodes left finishes with the local engine's rows."""
    import shutil
    import tempfile

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("needs a network namespace of its own (`unshare -n`, root): Ray binds loopback only there")
    temp = tempfile.mkdtemp(prefix="sevis-ray-", dir="/tmp")  # Ray's socket paths: short
    out, result = tmp_path / "cluster.parquet", tmp_path / "result.json"
    spec = {
        "root": str(ROOT), "weights": str(senet_file), "data": str(image_folder), "out": str(out), "temp": temp,
        "port": 6390, "nodes": 2, "cpus": 2, "batch_size": 1, "workers": 2, "kill_after": 2, "grace": 0,
        "result": str(result),
    }  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        ["unshare", "-n", sys.executable, str(ROOT / "tests" / "ray_cluster.py"), str(tmp_path / "spec.json")],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, f"Ray's logs are in {temp}:\n{done.stderr[-3000:]}"
    shutil.rmtree(temp, ignore_errors=True)
    report = json.loads(result.read_text())
    assert report["addresses"] == ["127.0.0.1"] and report["nodes"] == 3  # every node on loopback
    assert report["killed"] in report["actors_on"], report  # the node killed ran an actor
    assert report["alive_after_kill"] == 2  # the head and the other worker node
    killed, resumed = report["drivers"]
    assert killed["rc"] == -signal.SIGKILL, killed["stderr"]
    assert 2 <= report["parts_at_kill"] < len(whole)  # killed mid-run
    assert resumed["rc"] == 0, resumed["stderr"]
    assert_same_rows(rows(out), whole, rtol=1e-4)  # none lost, none twice
    assert not out.with_name(out.name + ".parts").exists()
