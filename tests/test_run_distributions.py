"""A saved run's distributions before and after SGE: counted while it is made, over all
its images, equal to the same images analysed in memory, whole after a resume, read
back within bounds, drawn in the report and on the Classes page."""

from __future__ import annotations

import base64
import json
import shutil
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import PHOTOS

import sevis
from sevis.jobs.extraction import extract
from sevis.report import build_report
from sevis.runs.distributions import DISTRIBUTIONS_KEY
from sevis.runs.reader import read_run

LAYOUT = {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png", "camera.png"], "vehicle": ["rocket.jpg"]}


def folder(root: Path, layout: dict[str, list[str]]) -> Path:
    for label, names in layout.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(PHOTOS / name, root / label / name)
    return root


def in_memory(model, layout: dict[str, list[str]]) -> sevis.ClassStats:
    """The same images analysed in memory, their distributions counted by class.

    NOTE one image a forward pass, as the runs these are compared with: on some CPUs a
    convolution's last bits depend on the batch it runs in, and a norm on a bin's edge then
    lands in the bin beside it (measured on this project's 2-core machines: two norms of
    SGE_4_2 moved to the bin beside theirs with the default batch of 8)."""
    files = [(f"{label}/{name}", (PHOTOS / name).read_bytes()) for label, names in layout.items() for name in names]
    labels = [name.split("/")[0] for name, _ in files]
    return sevis.analyse(model, files, labels, distributions=True, batch_size=1).stats["sge"]


def assert_same_distributions(run_stats: sevis.ClassStats, stats: sevis.ClassStats) -> None:
    for layer in stats.layers:
        assert sorted(run_stats.distributions(layer)) == ["after", "before"], layer
        groups = len(stats.mean(layer))
        for name in ("before", "after"):
            for group in (None, 0, groups // 2, groups - 1):
                expected = stats.distribution(layer, name, sevis.ALL, group)
                assert np.array_equal(run_stats.distribution(layer, name, sevis.ALL, group), expected), (layer, name)
                assert expected.sum() > 0


def test_a_run_keeps_the_distributions_of_all_its_images(tiny_sge, tmp_path):
    """Parts of one image each, summed into the merged file: the counts of the images
    analysed in memory, every layer, before and after, all groups and single ones."""
    data = folder(tmp_path / "data", LAYOUT)
    out = extract(tiny_sge, data, tmp_path / "run.parquet", batch_size=1, workers=0, progress=False)
    run = read_run(out, cache=False)
    assert run.metadata.distributions and DISTRIBUTIONS_KEY in pq.read_schema(out).metadata
    stats = run.stats["sge"]
    assert_same_distributions(stats, in_memory(tiny_sge, LAYOUT))
    layer = stats.layers[0]
    assert not stats.distributions_by_class(layer)  # over all images: a class cannot be asked
    with pytest.raises(ValueError, match="kept over all images, not by class"):
        stats.distribution(layer, "before", "cat")
    frame = stats.distribution_frame(layer)
    assert (
        set(frame.distribution) == {"before", "after"}
        and frame["count"].sum() == 2 * stats.distribution(layer, "before").sum()
    )


def test_a_resumed_run_counts_each_image_once(tiny_sge, tmp_path):
    """A finished run resumed after more images arrived: its own counts (carried by the
    finished file) plus the new parts' equal a run of all the images at once."""
    first = {"cat": LAYOUT["cat"], "cup": LAYOUT["cup"][:1]}
    data = folder(tmp_path / "data", first)
    out = tmp_path / "run.parquet"
    extract(tiny_sge, data, out, batch_size=1, workers=0, progress=False)
    folder(data, LAYOUT)  # the rest arrive
    extract(tiny_sge, data, out, batch_size=1, workers=0, progress=False, resume=True)
    run = read_run(out, cache=False)
    assert run.metadata.images == 5
    assert_same_distributions(run.stats["sge"], in_memory(tiny_sge, LAYOUT))


def test_without_distributions_the_run_has_none_and_is_resumed_only_so(tiny_sge, tmp_path):
    data = folder(tmp_path / "data", LAYOUT)
    out = extract(tiny_sge, data, tmp_path / "run.parquet", workers=0, progress=False, distributions=False)
    assert DISTRIBUTIONS_KEY not in pq.read_schema(out).metadata
    run = read_run(out, cache=False)
    assert not run.metadata.distributions and run.stats["sge"].distributions("SGE_3_2") == []
    with pytest.raises(sevis.RunError, match=r"other settings \(distributions\)"):
        extract(tiny_sge, data, out, workers=0, progress=False, resume=True)
    extract(tiny_sge, data, out, workers=0, progress=False, resume=True, distributions=False)


def test_an_se_run_records_no_distributions(tiny_se, tmp_path):
    data = folder(tmp_path / "data", LAYOUT)
    out = extract(tiny_se, data, tmp_path / "run.parquet", workers=0, progress=False)
    assert not read_run(out, cache=False).metadata.distributions
    assert DISTRIBUTIONS_KEY not in pq.read_schema(out).metadata


def _rewritten(source: Path, target: Path, value: bytes) -> Path:
    table = pq.read_table(source)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, DISTRIBUTIONS_KEY: value}), target)
    return target


@pytest.fixture(scope="module")
def sge_run(tiny_sge, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sge_run")
    return extract(tiny_sge, folder(root / "data", LAYOUT), root / "run.parquet", workers=0, progress=False)


def _value(run: Path) -> dict:
    return json.loads(pq.read_schema(run).metadata[DISTRIBUTIONS_KEY])


def _packed(values: bytes) -> str:
    return base64.b64encode(zlib.compress(values)).decode()


def test_damaged_distributions_are_refused_with_a_message_that_echoes_nothing(sge_run, tmp_path):
    good = _value(sge_run)
    size = sum(p for named in good["layers"].values() for p in named.values()) * 100
    layer = next(iter(good["layers"]))
    secret = "<b>" + "x" * 5000
    cases = {
        "not JSON": secret.encode(),
        "no bins or counts": json.dumps({**good, "bins": 50}).encode(),
        "a layer the run does not have": json.dumps({**good, "layers": {secret: {"before": 16}}}).encode(),
        "not its groups": json.dumps({**good, "layers": {layer: {"before": 10**9}}}).encode(),
        "counts not readable": json.dumps({**good, "counts": secret}).encode(),
        "counts of another size": json.dumps({**good, "counts": _packed(bytes(8 * (size - 1)))}).encode(),
        "negative counts": json.dumps({**good, "counts": _packed(np.full(size, -1, "<i8").tobytes())}).encode(),
    }
    for why, value in cases.items():
        bad = _rewritten(sge_run, tmp_path / "bad.parquet", value)
        with pytest.raises(sevis.RunError, match=why) as info:
            read_run(bad, cache=False)
        assert "bad.parquet" in str(info.value) and secret[:20] not in str(info.value) and len(str(info.value)) < 300


def test_a_compression_bomb_in_the_counts_is_read_no_further_than_their_size(sge_run, tmp_path):
    """1 GB of zeros compressed to 1 MB: refused after decompressing the counts' size (a
    few hundred KB) plus one byte, not 1 GB."""
    good = _value(sge_run)
    bomb = zlib.compress(bytes(1 << 30), 9)
    bad = _rewritten(
        sge_run, tmp_path / "bomb.parquet", json.dumps({**good, "counts": base64.b64encode(bomb).decode()}).encode()
    )
    tracemalloc.start()  # the decompressed bytes are Python objects: traced
    try:
        with pytest.raises(sevis.RunError, match="counts of another size"):
            read_run(bad, cache=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 1024**2, peak  # well under the 1 GB the bomb would inflate to


def test_the_report_draws_the_distributions_of_an_sge_run(sge_run, tiny_sge, tmp_path):
    title = "distribution of group activations before and after SGE (all images)"
    run = read_run(sge_run, cache=False)
    page = build_report(run)
    shown = run.metadata.attention["sge"]
    kind = sevis.get_kind("sge")
    assert page.count(title) == len(kind.shown_layers(shown)) > 0
    data = folder(tmp_path / "data", LAYOUT)
    plain = extract(tiny_sge, data, tmp_path / "plain.parquet", workers=0, progress=False, distributions=False)
    assert title not in build_report(read_run(plain, cache=False))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_ray_engine_keeps_the_local_engines_distributions(tmp_path):
    """Ray's actors count their batches and the counts ride on the rows to the driver:
    the run holds the local engine's counts (SGE-ResNet-50, the seeded untrained weights;
    actors run torch on other thread counts, so a norm on a bin's edge may land one bin
    off)."""
    import ray  # requirements-dev.txt installs it: a missing Ray must fail, not skip

    from sevis.jobs.ray_engine import extract_ray

    data = folder(tmp_path / "data", LAYOUT)
    model = sevis.load_model("sge_resnet50", "untrained")
    local = read_run(
        extract(model, data, tmp_path / "local.parquet", batch_size=2, workers=0, progress=False), cache=False
    )
    out = tmp_path / "ray.parquet"
    try:
        extract_ray("sge_resnet50", "untrained", data, out, batch_size=2, workers=2, ray_init={"num_cpus": 2})
    finally:
        ray.shutdown()
    run = read_run(out, cache=False)
    assert run.metadata.distributions and run.metadata.images == 5
    ours, theirs = run.stats["sge"], local.stats["sge"]
    for layer in theirs.layers:
        for name in ("before", "after"):
            a, b = ours.distribution(layer, name), theirs.distribution(layer, name)
            assert a.sum() == b.sum() > 0, (layer, name)
            assert np.abs(a - b).sum() <= max(4, b.sum() // 10_000), (layer, name)


def test_all_images_counts_follow_merges_and_regroupings_only_while_they_stay_all_images(sge_run):
    stats = read_run(sge_run, cache=False).stats["sge"]
    layer = stats.layers[0]
    counts = stats.distribution(layer, "before")
    renamed = stats.regroup({c: c.upper() for c in stats.classes})  # every class kept: the same images
    assert np.array_equal(renamed.distribution(layer, "before"), counts)
    assert renamed.distributions(layer) == stats.distributions(layer)
    fewer = stats.regroup({c: c for c in stats.classes[1:]})  # one class left out: no longer all images
    assert fewer.distributions(layer) == []
    both = sevis.stats.MaskStats()
    both.merge(stats)  # into nothing: all of the images
    assert np.array_equal(both.distribution(layer, "before"), counts)
    both.merge(stats)  # the same images twice: counted twice, as their moments are
    assert np.array_equal(both.distribution(layer, "before"), 2 * counts)
    both.merge(stats.regroup({}))  # no images: nothing changes
    assert np.array_equal(both.distribution(layer, "before"), 2 * counts)
    both.merge(fewer)  # images without their counts: the sum is no longer of all images
    assert both.distributions(layer) == []
    with pytest.raises(ValueError, match="must be"):
        stats.set_distribution(layer, "before", np.zeros((3, 50), np.int64))
    with pytest.raises(ValueError, match="positions"):
        stats.set_distribution(layer, "other", np.zeros((3, 100), np.int64))
