"""Run metadata is typed, round-trips through JSON, and reads sevis 0.1 runs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sevis
from sevis.runs.reader import read_run
from sevis.runs.schema import METADATA_KEY, RunMetadata, read_metadata


def metadata(**changes) -> RunMetadata:
    fields = dict(
        model="se_resnet50",
        weights="/w/se.pth",
        weights_sha256="ab" * 32,
        untrained=False,
        sevis_version="0.2.0",
        data_config={"crop_pct": 0.875},
        attention={"se": ["SE_4_6"]},
        dims={"SE_4_6": {"excitation": 2}},
        source="/data",
        labels="folder",
    )
    return RunMetadata(**{**fields, **changes})


def test_json_round_trip_and_settings():
    m = metadata(images=3, failures=[{"path": "x.jpg", "reason": "truncated"}])
    assert RunMetadata.from_json(m.to_json()) == m
    assert "images" not in m.settings() and "failures" not in m.settings()
    assert m.settings()["weights_sha256"] == "ab" * 32
    assert m.provenance == sevis.Provenance("se_resnet50", "/w/se.pth", False, "ab" * 32)
    assert m.layer_kinds == {"SE_4_6": "se"}


def test_a_sevis_0_1_run_is_read(tmp_path):
    legacy = {
        "model": "se_resnet50",
        "weights": "w.pth",
        "weights_sha256": None,
        "untrained": False,
        "sevis_version": "0.1.0",
        "data_config": {},
        "se_layers": ["SE_4_6"],
        "sge_layers": [],
        "source": "d",
        "labels": "folder",
        "per_class": None,
        "seed": 0,
        "layers": None,
        "images": 2,
        "failures": [],
    }
    schema = pa.schema(
        [("path", pa.string()), ("label", pa.string()), ("SE_4_6", pa.list_(pa.float32(), 2))],
        metadata={METADATA_KEY: json.dumps(legacy)},
    )
    table = pa.table({"path": ["a", "b"], "label": ["x", "y"], "SE_4_6": [[0.1, 0.2], [0.3, 0.4]]}, schema=schema)
    pq.write_table(table, tmp_path / "old.parquet")
    run = read_run(tmp_path / "old.parquet")
    assert run.metadata.attention == {"se": ["SE_4_6"]} and run.se.classes == ["x", "y"]
    assert run.se.mean("SE_4_6").round(3).tolist() == [0.2, 0.3]


def test_unreadable_runs_are_sevis_errors(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(sevis.RunError, match="bad.parquet: not a readable Parquet file"):
        read_metadata(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"a": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(sevis.RunError, match="not a run written by `sevis extract`"):
        read_run(tmp_path / "plain.parquet")
    with pytest.raises(sevis.RunError, match="missing.parquet"):
        read_run(tmp_path / "missing.parquet")


def test_null_bands_from_an_analysis_and_from_its_saved_run(tiny_se, image_folder, tmp_path):
    from sevis.jobs.extraction import extract
    from sevis.runs.sample import null_bands, read_rows

    out = extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    rows, labels = read_rows(out, "se")
    assert labels == ["cat", "cat", "cup", "cup", "vehicle", "vehicle", "vehicle"]
    assert rows["SE_2_1"].shape == (7, 32) and list(rows) == sevis.read_run(out).se.layers
    bands = null_bands(out, "se", permutations=50)
    files = [(p, (image_folder / p).read_bytes()) for p in pq.read_table(out, columns=["path"])["path"].to_pylist()]
    analysis = sevis.analyse(tiny_se, files, labels=labels)
    same = analysis.null_bands("se", permutations=50)
    for layer, band in bands.items():  # the same rows, labels and seed: the same band
        assert band.permutations == 50 and band.low <= band.mean <= band.high
        assert abs(band.mean - same[layer].mean) < 1e-4 and abs(band.high - same[layer].high) < 1e-4
    few, few_labels = read_rows(out, "se", max_rows=3, seed=1)
    assert len(few_labels) == 3 and few["SE_5_3"].shape == (3, 256)
    pick = np.sort(np.random.default_rng(1).choice(7, 3, replace=False))  # the seeded sample, by hand
    assert few_labels == [labels[i] for i in pick]
    np.testing.assert_array_equal(few["SE_5_3"], rows["SE_5_3"][pick])


def test_reading_in_column_shares_equals_one_pass(tiny_se, image_folder, tmp_path, monkeypatch):
    """A run of 2,600 images in three row groups, read by 1, 2 or 3 threads each taking
    consecutive layers, gives exactly the statistics of one ExcitationStats fed the rows
    batch by batch: classes in the file's order, layers in depth order; and the chance
    bands of all its 2,600 rows (more than SAMPLE_ROWS: read again, a layer at a time)."""
    from sevis.jobs.extraction import extract
    from sevis.runs import reader, sample
    from sevis.runs.schema import run_schema, writer_options
    from sevis.stats.measures import specificity_nulls

    probe = extract(tiny_se, image_folder, tmp_path / "probe.parquet", workers=0, progress=False)
    meta = read_metadata(probe)
    layers = meta.attention["se"]
    rng = np.random.default_rng(4)
    n = 2600
    labels = [f"class {c}" for c in rng.integers(0, 40, n)]
    values = {layer: rng.random((n, meta.dims[layer]["excitation"]), np.float32) for layer in layers}
    values[layers[0]][5, 0] = 1.0  # the closed last bin
    table = pa.table(
        {
            "path": [f"{label}/{i}.jpg" for i, label in enumerate(labels)],
            "label": labels,
            "label_source": ["folder"] * n,
            "top5_classes": [[label] * 5 for label in labels],
            "top5_probs": [[0.2] * 5] * n,
            **{
                layer: pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1]) for layer, v in values.items()
            },
        },
        schema=run_schema(meta),
    )
    out = tmp_path / "big.parquet"
    pq.write_table(table, out, row_group_size=1024, **writer_options(table.schema))
    expected = sevis.ExcitationStats()
    for start in range(0, n, 1024):
        expected.update({layer: v[start : start + 1024] for layer, v in values.items()}, labels[start : start + 1024])
    assert n > sample.SAMPLE_ROWS
    for threads in (1, 2, 3):
        monkeypatch.setattr(reader, "workers", lambda threads=threads: threads)
        run = read_run(out, cache=False)
        assert len(reader._shares(table.schema, meta, meta.layer_kinds, threads)) == min(threads, len(layers))
        assert run.se.layers == layers and run.se.classes == list(dict.fromkeys(labels))
        for layer in layers:
            for cls in (sevis.ALL, "class 3"):
                np.testing.assert_array_equal(run.se.mean(layer, cls), expected.mean(layer, cls))
                np.testing.assert_array_equal(run.se.std(layer, cls), expected.std(layer, cls))
                np.testing.assert_array_equal(run.se.histogram(layer, cls), expected.histogram(layer, cls))
        assert run.samples == {}  # too many rows to keep: the bands read the file again
    bands = run.null_bands("se")
    for layer, band in specificity_nulls(values, labels).items():  # every row, in memory
        assert bands[layer].images == n == band.images and bands[layer].permutations == 199
        assert (bands[layer].mean, bands[layer].low, bands[layer].high) == pytest.approx(
            (band.mean, band.low, band.high), rel=1e-9, abs=1e-12
        )


def test_chance_bands_computed_in_the_background_and_their_errors_raised_where_asked(tiny_se, image_folder, tmp_path):
    from sevis.jobs.extraction import extract
    from sevis.runs.sample import null_bands

    out = extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    run = read_run(out, cache=False, bands=True)  # started as soon as the statistics are read
    assert run.prefetch_null_bands("se") is run.prefetch_null_bands("se")  # one computation
    assert run.null_bands("se") == null_bands(out, "se")
    lost = read_run(out, cache=False)
    lost.samples = {}  # the rows are read again from the file, which is gone
    out.unlink()
    for _ in range(2):
        with pytest.raises(sevis.RunError, match="run.parquet"):
            lost.null_bands("se")


def test_a_second_open_reads_the_cache_and_a_rewritten_run_is_read_again(tiny_se, image_folder, tmp_path):
    from sevis.jobs.extraction import extract
    from sevis.runs._cache import cache_dir
    from sevis.runs.sample import null_bands

    out = extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False)
    first = read_run(out)
    assert first.samples["se"][1] == ["cat", "cat", "cup", "cup", "vehicle", "vehicle", "vehicle"]
    bands = first.null_bands("se")  # from the rows kept while reading, stored with the statistics
    for layer, band in null_bands(out, "se").items():  # the same sample, read again: the same band
        assert bands[layer] == band
    (cached,) = cache_dir().glob("*.pkl")
    (bands_file,) = cache_dir().glob("*.se.nulls")  # the bands alone: the statistics are not rewritten
    assert bands_file.stem == f"{cached.stem}.se" and bands_file.stat().st_size < cached.stat().st_size
    second = read_run(out)
    assert second.cache_file == cached and not second.samples and second.nulls["se"] == bands
    assert second.se.classes == first.se.classes and second.metadata == first.metadata
    for layer in first.se.layers:
        np.testing.assert_array_equal(second.se.mean(layer, "cup"), first.se.mean(layer, "cup"))
        np.testing.assert_array_equal(second.se.histogram(layer), first.se.histogram(layer))
    # another run written in place: another footer and time, so another key
    pq.write_table(pq.read_table(out).slice(0, 4), out)
    assert read_run(out).se.count() == 4
    (fresh,) = set(cache_dir().glob("*.pkl")) - {cached}
    # a damaged cache file is ignored and rewritten, never an error
    fresh.write_bytes(b"not a pickle")
    assert read_run(out).se.count() == 4
    assert read_run(out).cache_file == fresh and read_run(out, cache=False).cache_file is None
