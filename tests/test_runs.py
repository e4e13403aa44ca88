"""Run metadata is typed, round-trips through JSON, and reads sevis 0.1 runs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sevis
from sevis.runs import METADATA_KEY, RunMetadata, read_metadata, read_run


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
