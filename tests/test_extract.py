"""sevis extract: rows equal capture's values, bad files reported, resume after a kill."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import class_folders, remount, small_disk
from numpy.testing import assert_allclose

import sevis
from sevis.cli import main
from sevis.data.files import discover
from sevis.jobs.extraction import extract
from sevis.runs.reader import read_run

ROOT = Path(__file__).resolve().parent.parent


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_same_rows(a: list[dict], b: list[dict], rtol: float) -> None:
    """Same rows, in the same order: text exactly, numbers to ``rtol``."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], list) and x[key] and isinstance(x[key][0], float):
                assert_allclose(x[key], y[key], rtol=rtol, atol=1e-6, err_msg=f"{x['path']} {key}")
            else:
                assert x[key] == y[key], (x["path"], key)


def test_rows_equal_capture_and_the_corrupt_file_is_reported(tiny_se, image_folder, tmp_path, caplog):
    se_model = tiny_se
    out = extract(se_model, image_folder, tmp_path / "run.parquet", batch_size=3, workers=2, progress=False)
    table = pq.read_table(out)
    assert table.num_rows == 7
    assert table.column("path").to_pylist() == [
        "cat/astronaut.png",
        "cat/chelsea.png",
        "cup/camera.png",
        "cup/coffee.png",
        "vehicle/motorcycle_left.png",
        "vehicle/motorcycle_right.png",
        "vehicle/rocket.jpg",
    ]
    assert table.column("label").to_pylist() == ["cat"] * 2 + ["cup"] * 2 + ["vehicle"] * 3
    assert set(table.column("label_source").to_pylist()) == {"folder"}
    meta = json.loads(table.schema.metadata[b"sevis"])
    assert [f["path"] for f in meta["failures"]] == ["vehicle/broken.jpg"]
    assert "truncated" in meta["failures"][0]["reason"]
    assert "skipped vehicle/broken.jpg" in caplog.text
    assert meta["model"] == "tiny_se" and meta["weights"] == "untrained" and meta["weights_sha256"] is None
    assert meta["untrained"] is True and meta["images"] == 7 and meta["data_config"]["crop_pct"] == 0.875
    assert list(meta["attention"]) == ["se"] and len(meta["attention"]["se"]) == 16
    assert meta["dims"]["SE_2_1"] == {"excitation": 32} and meta["dims"]["SE_5_3"] == {"excitation": 256}

    paths = table.column("path").to_pylist()
    x = sevis.preprocess(se_model, [sevis.decode_image((image_folder / p).read_bytes()) for p in paths])
    with torch.inference_mode(), sevis.capture(se_model) as cap:
        logits = se_model(x)
    for layer, values in cap.excitations.items():
        column = np.array(table.column(layer).to_pylist(), dtype=np.float32)
        assert column.shape == values.shape
        assert_allclose(column, values.numpy(), rtol=1e-4, atol=1e-5)
    top = logits.softmax(1).topk(5)
    assert table.column("top5_classes").to_pylist()[0] == [se_model.sevis_info.class_names[i] for i in top.indices[0]]
    assert_allclose(np.array(table.column("top5_probs").to_pylist()), top.values.numpy(), rtol=1e-4)

    run = read_run(out)
    assert run.se.classes == ["cat", "cup", "vehicle"] and run.se.count("vehicle") == 3
    assert_allclose(run.se.mean("SE_4_6", "cat"), cap.excitations["SE_4_6"][:2].double().mean(0).numpy(), rtol=1e-4)


def test_sge_summaries_flat_folder_and_zip(tiny_sge, image_folder, tmp_path):
    sge_model = tiny_sge
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (image_folder / "cat").iterdir():
        shutil.copy(p, flat / p.name)
    out = extract(sge_model, flat, tmp_path / "flat.parquet", workers=0, progress=False)
    table = pq.read_table(out)
    assert set(table.column("label_source").to_pylist()) == {"predicted"}
    assert table.column("label").to_pylist() == [c[0] for c in table.column("top5_classes").to_pylist()]
    image = sevis.decode_image((flat / "chelsea.png").read_bytes())
    with torch.inference_mode(), sevis.capture(sge_model) as cap:
        sge_model(sevis.preprocess(sge_model, image))
    row = table.to_pylist()[1]
    masks = cap.masks["SGE_3_2"][0].numpy()
    assert_allclose(row["SGE_3_2_mean"], masks.mean(axis=(1, 2)), rtol=1e-4)
    assert_allclose(row["SGE_3_2_var"], masks.reshape(len(masks), -1).var(1), rtol=1e-3, atol=1e-7)

    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(image_folder.rglob("*")):
            if p.is_file():
                z.write(p, f"dataset/{p.relative_to(image_folder)}")
    zipped = extract(sge_model, archive, tmp_path / "zip.parquet", workers=2, layers=["SGE_4_6"], progress=False)
    from sevis.report import build_report

    page = build_report(read_run(zipped), classes=["cat", "cup"])
    assert "cat: 2, cup: 2" in page and "SGE_4_6: SGE mask statistics per class" in page
    assert "SGE_4_6: spread of each group's activations before and after SGE" in page
    table = pq.read_table(zipped)
    assert table.column_names[5:] == [
        "SGE_4_6_mean",
        "SGE_4_6_var",
        "SGE_4_6_norm_mean_before",
        "SGE_4_6_norm_var_before",
        "SGE_4_6_norm_mean_after",
        "SGE_4_6_norm_var_after",
    ]
    assert table.column("path").to_pylist()[0] == "dataset/cat/astronaut.png"
    assert table.column("label").to_pylist()[:2] == ["cat", "cat"] and table.num_rows == 7


def test_per_class_sampling_is_seeded(image_folder):
    a = discover(image_folder, per_class=2, seed=7)
    assert [i.label for i in a] == ["cat"] * 2 + ["cup"] * 2 + ["vehicle"] * 2
    assert a == discover(image_folder, per_class=2, seed=7)
    seeds = {tuple(i.path for i in discover(image_folder, per_class=1, seed=s)) for s in range(12)}
    assert len(seeds) > 1
    text_only = image_folder.parent / "text-only"
    text_only.mkdir(exist_ok=True)
    (text_only / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        discover(text_only)


KILL_SCRIPT = """
import os, signal, sys
# NOTE a child inherits ignored signals (`nohup`, `&` in a script, CI runners that ignore
# SIGINT): the signals this test sends must do what they do in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.path[:0] = [{root!r}, {root!r} + "/tests"]
import pyarrow.parquet as pq
import sevis, tiny
from sevis.jobs.extraction import extract
model = sevis.load_model("tiny_se", "untrained")
seen = []
def die(*args):
    seen.append(1)
    if len(seen) == {after}:
        os.kill(os.getpid(), signal.{signal})
if {in_writes}:  # count Parquet writes (one per part, then the merge) instead of forwards
    write = pq.ParquetWriter.write_table
    def dying_write(self, *args, **kwargs):
        die()
        return write(self, *args, **kwargs)
    pq.ParquetWriter.write_table = dying_write
else:
    model.register_forward_pre_hook(die)
extract(model, {data!r}, {out!r}, batch_size=1, workers=0, part_size={part_size}, progress=False)
"""


def run_until_killed(
    image_folder, out, sig: str, after: int, part_size: int = 2, in_writes: bool = False
) -> subprocess.CompletedProcess:
    script = KILL_SCRIPT.format(
        root=str(ROOT),
        data=str(image_folder),
        out=str(out),
        signal=sig,
        after=after,
        part_size=part_size,
        in_writes=in_writes,
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def part_rows(out: Path) -> list[str]:
    parts = sorted(out.with_name(out.name + ".parts").glob("part-*.parquet"))
    return [p for part in parts for p in pq.read_table(part, columns=["path"]).column("path").to_pylist()]


@pytest.mark.slow
def test_kill_9_at_random_points_loses_at_most_the_batch_in_flight(tiny_se, image_folder, tmp_path):
    """Every batch is a part as soon as it is done: killed while image k runs, the parts
    hold exactly the k - 1 images before it; resuming gives the uninterrupted file."""
    whole = rows(extract(tiny_se, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False))
    rng = np.random.default_rng(2026)
    for trial, after in enumerate(sorted(rng.choice(np.arange(2, 9), size=4, replace=False))):
        out = tmp_path / f"killed-{trial}.parquet"
        done = run_until_killed(image_folder, out, "SIGKILL", after=int(after), part_size=1)
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
        # Forward call 1 is the probe; image k runs in call k + 1 (the unreadable file is skipped).
        kept = part_rows(out)
        assert kept == [r["path"] for r in whole][: after - 2], (after, kept)
        extract(tiny_se, image_folder, out, batch_size=1, workers=0, resume=True, progress=False)
        assert rows(out) == whole, after  # none lost, none twice


@pytest.mark.slow
def test_a_merge_killed_halfway_is_finished_by_resume(tiny_se, image_folder, tmp_path):
    whole = rows(extract(tiny_se, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False))
    out = tmp_path / "merge.parquet"
    # 7 parts are written (writes 1 to 7); the merge's first write is the 8th.
    done = run_until_killed(image_folder, out, "SIGKILL", after=8, part_size=1, in_writes=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert not out.exists() and len(part_rows(out)) == 7
    with pytest.raises(sevis.RunError, match="--resume"):
        extract(tiny_se, image_folder, out, batch_size=1, workers=0, progress=False)
    extract(tiny_se, image_folder, out, batch_size=1, workers=0, resume=True, progress=False)
    assert rows(out) == whole and not out.with_name("merge.parquet.tmp").exists()


@pytest.mark.slow
def test_sigterm_keeps_what_was_done_and_says_so(tiny_se, image_folder, tmp_path):
    out = tmp_path / "terminated.parquet"
    done = run_until_killed(image_folder, out, "SIGTERM", after=1 + 4, part_size=1)
    assert done.returncode != 0 and "terminated: " in done.stderr
    assert "holds the 3 images done so far; run again with --resume" in done.stderr
    assert pq.read_table(out).num_rows == 3
    extract(tiny_se, image_folder, out, batch_size=1, workers=0, resume=True, progress=False)
    whole = extract(tiny_se, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False)
    assert rows(out) == rows(whole)


@pytest.mark.slow
def test_a_full_disk_is_reported_and_resume_finishes_after_space_is_freed(tiny_se, image_folder, tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        out = disk / "run.parquet"
        with pytest.raises(sevis.RunError, match=r"could not write to .*No space left on device.*--resume"):
            extract(tiny_se, image_folder, out, batch_size=1, workers=0, progress=False)
        kept = part_rows(out)
        whole = rows(
            extract(tiny_se, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False)
        )
        assert 0 < len(kept) < 7 and kept == [r["path"] for r in whole][: len(kept)]
        assert not list(out.with_name("run.parquet.parts").glob(".*"))  # no half-written file, none unadopted
        remount(disk, "8m")
        extract(tiny_se, image_folder, out, batch_size=1, workers=0, resume=True, progress=False)
        assert rows(out) == whole


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_uninterrupted_file(tiny_se, image_folder, tmp_path):
    se_model = tiny_se
    whole = extract(se_model, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False)

    out = tmp_path / "killed.parquet"
    # The probe forward is call 1; images follow. Killed while the 6th image runs:
    # parts of 2 hold 4 images, the 5th is lost with the process.
    done = run_until_killed(image_folder, out, "SIGKILL", after=1 + 6)
    assert done.returncode == -signal.SIGKILL
    parts = out.with_name(out.name + ".parts")
    assert not out.exists() and len(list(parts.glob("part-*.parquet"))) == 2
    with pytest.raises(sevis.RunError, match="--resume"):
        extract(se_model, image_folder, out, progress=False)
    # NOTE batch size 1 on both sides: a batch of a different make-up may change the
    # last bits of a convolution's result, which would hide what this test is about.
    extract(se_model, image_folder, out, batch_size=1, workers=2, resume=True, progress=False)
    assert rows(out) == rows(whole)
    assert pq.read_schema(out).metadata == pq.read_schema(whole).metadata
    assert not parts.exists()


@pytest.mark.slow
def test_ctrl_c_leaves_a_valid_file_and_resume_finishes_it(tiny_se, image_folder, tmp_path):
    se_model = tiny_se
    out = tmp_path / "interrupted.parquet"
    done = run_until_killed(image_folder, out, "SIGINT", after=1 + 4)
    assert done.returncode != 0 and "holds the 3 images done so far; run again with --resume" in done.stderr
    partial = pq.read_table(out)  # a valid Parquet file with every image done, parts or not
    assert partial.num_rows == 3
    assert json.loads(partial.schema.metadata[b"sevis"])["images"] == partial.num_rows
    extract(se_model, image_folder, out, resume=True, batch_size=1, workers=0, progress=False)
    whole = extract(se_model, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False)
    assert rows(out) == rows(whole)
    # Resuming a finished run has nothing left to do and changes nothing.
    extract(se_model, image_folder, out, resume=True, workers=0, progress=False)
    assert rows(out) == rows(whole)


def test_resume_with_other_settings_is_refused(tiny_se, image_folder, tmp_path):
    se_model = tiny_se
    out = tmp_path / "run.parquet"
    parts = out.with_name(out.name + ".parts")
    parts.mkdir()
    (parts / "run.json").write_text(json.dumps({"model": "sge_resnet50"}))
    with pytest.raises(ValueError, match="cannot resume .* other settings .*model"):
        extract(se_model, image_folder, out, resume=True, progress=False)


def test_cli_extract_and_report(image_folder, tmp_path, capsys):
    out, html = tmp_path / "cli.parquet", tmp_path / "report.html"
    assert (
        main(
            [
                "extract",
                str(image_folder),
                "--model",
                "tiny_se",
                "--weights",
                "untrained",
                "--out",
                str(out),
                "--per-class",
                "2",
                "--layers",
                "SE_4_6",
                "SE_5_2",
                "--quiet",
            ]
        )
        == 0
    )
    table = pq.read_table(out)
    assert table.num_rows == 6 and table.column_names[5:] == ["SE_4_6", "SE_5_2"]
    assert main(["report", str(out), "--out", str(html), "--classes", "cat", "vehicle"]) == 0
    text = html.read_text()
    assert text.count("Plotly.newPlot") == 6  # 2 layers x (profiles, histograms), depth curve, selectivity
    assert "SE_4_6: mean excitation per class" in text and "<script src=" not in text
    assert "<td>weights SHA-256</td><td>untrained, seed 0</td>" in text and "None" not in text.split("<script")[0]
    assert main(["report", str(out), "--out", str(html), "--classes", "dog"]) == 2
    assert "class 'dog' is not in the run; it has ['cat', 'cup', 'vehicle']" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "absent"), "--weights", "untrained", "--out", str(out)]) == 2
    assert "not a folder or a zip archive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", str(image_folder), "--per-class", "0", "--out", str(out)])
    assert exit_info.value.code == 2 and "--per-class: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["extract", str(image_folder), "--weights", str(tmp_path / "nope.pth"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_gives_the_local_engine_rows(senet_file, image_folder, tmp_path, monkeypatch):
    """The same rows, schema and metadata as the local engine's; the actors write the parts
    and no row is handed to the driver's writer."""
    import ray  # requirements-dev.txt installs it: a missing Ray must fail, not skip

    from sevis.jobs.ray_engine import extract_ray
    from sevis.runs.writer import RunWriter

    local = tmp_path / "local.parquet"
    assert (
        main(
            [
                "extract",
                str(image_folder),
                "--weights",
                str(senet_file),
                "--out",
                str(local),
                "--batch-size",
                "3",
                "--workers",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "ray.parquet"
    adopted = []
    monkeypatch.setattr(RunWriter, "add", lambda self, *rows: pytest.fail("a row passed through the driver"))
    monkeypatch.setattr(
        RunWriter, "adopt", lambda self, name, adopt=RunWriter.adopt: adopted.append(name) or adopt(self, name)
    )
    try:
        extract_ray(
            "se_resnet50", str(senet_file), image_folder, out, batch_size=3, workers=2, ray_init={"num_cpus": 2}
        )
        assert ray.is_initialized()
        # the Ray it started listens on the loopback address only, not the machine's network address
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    finally:
        ray.shutdown()
    # Ray's actors run torch on other thread counts, so sums may differ in the last bits.
    assert_same_rows(rows(out), rows(local), rtol=1e-4)
    assert len(adopted) == 3  # 8 images in batches of 3, a file each (the broken one fails to decode)
    assert pq.read_schema(out).metadata == pq.read_schema(local).metadata
    assert [f["path"] for f in json.loads(pq.read_schema(out).metadata[b"sevis"])["failures"]] == ["vehicle/broken.jpg"]


def test_files_written_for_a_run_are_parts_only_once_adopted(tiny_se, image_folder, tmp_path):
    """What a Ray actor writes (write_incoming) joins the run when the driver adopts it, after
    the rows added before; a file never adopted (its driver killed) is dropped when the run
    resumes, and its images are done again; adopt takes only such files of its own folder."""
    import pyarrow as pa

    from sevis.runs.writer import RunWriter, write_incoming

    whole = rows(extract(tiny_se, image_folder, tmp_path / "whole.parquet", batch_size=1, workers=0, progress=False))
    table = pa.Table.from_pylist(whole, pq.read_schema(tmp_path / "whole.parquet"))
    out = tmp_path / "run.parquet"
    metadata = sevis.runs.read_metadata(tmp_path / "whole.parquet")
    metadata.failures, metadata.images = [], 0
    with pytest.raises(KeyboardInterrupt), RunWriter(out, metadata) as writer:
        writer.add(table.slice(0, 2))  # rows the driver holds (part_size 1: a part at once)
        unadopted = write_incoming(writer.parts, table.slice(2, 3))
        writer.adopt(write_incoming(writer.parts, table.slice(5)))
        for refused in ("part-000000.parquet", "../whole.parquet", unadopted + "x"):
            with pytest.raises(sevis.RunError, match="no file written for"):
                writer.adopt(refused)
        assert (writer.parts / unadopted).is_file()
        raise KeyboardInterrupt  # stopped: the parts are kept for --resume
    assert pq.read_table(out).column("path").to_pylist() == [r["path"] for r in whole[:2] + whole[5:]]
    assert not list(out.with_name("run.parquet.parts").glob(".*"))  # the unadopted file is gone
    again = RunWriter(out, metadata, resume=True)
    assert again.done == {r["path"] for r in whole[:2] + whole[5:]}  # its three images are to do again


def test_resuming_a_finished_run_with_other_settings_leaves_it_as_it_was(tiny_se, image_folder, tmp_path):
    out = extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    before, rows_before = out.read_bytes(), pq.read_table(out).to_pylist()
    with pytest.raises(sevis.RunError, match=r"it was made with other settings \(attention, dims, layers\)"):
        extract(tiny_se, image_folder, out, layers=["SE_5_2"], resume=True, workers=0, progress=False)
    assert out.read_bytes() == before and not out.with_name("run.parquet.parts").exists()
    # With its own settings it resumes: nothing left to do, the same rows.
    extract(tiny_se, image_folder, out, resume=True, workers=0, progress=False)
    assert pq.read_table(out).to_pylist() == rows_before


def test_cli_report_with_an_untrained_baseline_run(tiny_se, image_folder, tmp_path, capsys):
    """`sevis report RUN --baseline UNTRAINED_RUN`: both curves on the depth figure, and the
    difference per layer equal to the two runs' own specificities; a baseline of trained
    weights or of other images is refused with a message."""
    import torch
    from tiny import randomize_

    trained = randomize_(sevis.load_model("tiny_se", "untrained"), seed=5)
    weights = tmp_path / "trained.pth"
    torch.save(trained.state_dict(), weights)
    run, base, html = tmp_path / "run.parquet", tmp_path / "base.parquet", tmp_path / "report.html"
    for out, source in ((run, str(weights)), (base, "untrained")):
        args = ["extract", str(image_folder), "--model", "tiny_se", "--weights", source, "--out", str(out), "--quiet"]
        assert main(args) == 0
    assert main(["report", str(run), "--out", str(html), "--baseline", str(base)]) == 0
    text = html.read_text()
    for name in ("untrained: ω²", "ω²(tiny_se) − ω²(untrained)"):  # as the page's JSON spells them
        assert json.dumps(name)[1:-1] in text or name in text
    from sevis.report import build_report

    fig_text = build_report(sevis.read_run(run), baseline=sevis.read_run(base))
    assert fig_text.count("Plotly.newPlot") == text.count("Plotly.newPlot")
    from sevis import figures

    a, b = sevis.read_run(run).se, sevis.read_run(base).se
    fig = figures.specificity_curve({"tiny_se": a, "untrained": b}, difference=("tiny_se", "untrained"))
    (gain,) = [t for t in fig.data if t.yaxis == "y3"]
    assert np.allclose(gain.y, [a.specificity(k) - b.specificity(k) for k in a.layers])
    assert main(["report", str(run), "--out", str(html), "--baseline", str(run)]) == 2  # trained: no baseline
    assert "not untrained weights" in capsys.readouterr().err
    few = tmp_path / "few.parquet"
    pq.write_table(pq.read_table(base).slice(0, 3), few)
    assert main(["report", str(run), "--out", str(html), "--baseline", str(few)]) == 2
    assert "other images than the run" in capsys.readouterr().err


def test_report_classes_by_name_on_a_run_of_wordnet_folders(tiny_se, tmp_path, photos, capsys):
    """`--classes goldfish pug` finds a run's ImageNet folders n01443537 and n02110958; a name
    two classes share lists them; a name of no class says what the run has."""
    goldfish, pug = "n01443537", "n02110958"  # ImageNet's folders of the two classes
    folder = class_folders(
        tmp_path / "data", {goldfish: ["chelsea.png", "astronaut.png"], pug: ["coffee.png", "rocket.jpg"]}
    )
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)
    html = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(html), "--classes", "goldfish", "pug"]) == 0
    assert "n01443537: 2, n02110958: 2" in html.read_text()
    assert main(["report", str(run), "--out", str(html), "--classes", "missile"]) == 2
    err = capsys.readouterr().err
    assert "'missile' names 2 ImageNet classes: missile (657); projectile, missile (744)" in err
    assert main(["report", str(run), "--out", str(html), "--classes", "goldfish", "tabby"]) == 2
    assert "class 'tabby' is not in the run; it has ['n01443537', 'n02110958']" in capsys.readouterr().err
