"""Statistics against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from sevis.stats import ALL, BIN_EDGES, ExcitationStats, MaskStats, mask_summary, predicted_labels

# Two channels; class a has two images, class b one.
A = np.array([[0.1, 0.2], [0.3, 0.4]])
B = np.array([[0.5, 0.9]])


def filled() -> ExcitationStats:
    stats = ExcitationStats()
    stats.update({"L": A}, ["a", "a"])
    stats.update({"L": torch.tensor(B)}, ["b"])
    return stats


def test_means_and_sample_stds_by_hand():
    stats = filled()
    assert stats.classes == ["a", "b"] and stats.layers == ["L"]
    assert (stats.count(), stats.count("a"), stats.count("b")) == (3, 2, 1)
    assert_allclose(stats.mean("L", "a"), [0.2, 0.3])
    assert_allclose(stats.mean("L", "b"), [0.5, 0.9])
    assert_allclose(stats.mean("L"), [0.3, 0.5])
    # a: deviations +-0.1 -> sqrt((0.01 + 0.01) / (2 - 1))
    assert_allclose(stats.std("L", "a"), [math.sqrt(0.02)] * 2)
    assert_allclose(stats.std("L", "b"), [0.0, 0.0])  # one image
    # all, channel 1: 0.2, 0.4, 0.9 around 0.5 -> (0.09 + 0.01 + 0.16) / 2
    assert_allclose(stats.std("L")[1], math.sqrt(0.13))


def test_specificity_by_hand():
    stats = filled()
    # channel 0: total SS = 0.04 + 0 + 0.04 = 0.08; between = 2 * 0.1^2 + 0.2^2 = 0.06
    # channel 1: total SS = 0.26; between = 2 * 0.2^2 + 0.4^2 = 0.24
    assert_allclose(stats.specificity("L"), (0.06 / 0.08 + 0.24 / 0.26) / 2)
    one = ExcitationStats()
    one.update({"L": A}, ["a", "a"])
    assert math.isnan(one.specificity("L"))
    same = ExcitationStats()
    same.update({"L": np.array([[0.2, 0.7], [0.2, 0.7], [0.2, 0.7]])}, ["a", "b", "a"])
    assert math.isnan(same.specificity("L"))  # no channel varies
    fixed = ExcitationStats()
    fixed.update({"L": np.array([[0.1, 0.9], [0.8, 0.3], [0.1, 0.9]])}, ["a", "b", "a"])
    assert_allclose(fixed.specificity("L"), 1.0)  # each class has its own fixed pattern


def test_histograms_on_fixed_bins():
    stats = filled()
    assert len(BIN_EDGES) == 51 and BIN_EDGES[0] == 0 and BIN_EDGES[-1] == 1
    hist = stats.histogram("L")
    assert hist.sum() == 6
    # 0.1 -> bin 5, 0.2 -> 10, 0.3 -> 15 (0.3 / 0.02 = 14.999... in floats: bin 14 or 15)
    expected = np.histogram([0.1, 0.2, 0.3, 0.4, 0.5, 0.9], bins=BIN_EDGES)[0]
    assert np.array_equal(hist, expected)
    assert np.array_equal(stats.histogram("L", "b"), np.histogram([0.5, 0.9], bins=BIN_EDGES)[0])
    edges = ExcitationStats()
    edges.update({"L": np.array([[0.0, 1.0]])}, ["x"])
    h = edges.histogram("L")
    assert h[0] == 1 and h[-1] == 1  # both ends of [0, 1] are counted


def test_batches_and_merge_equal_one_pass():
    rng = np.random.default_rng(0)
    values = rng.random((40, 7))
    labels = [("cat", "dog", "fish")[i % 3] for i in range(40)]
    whole = ExcitationStats()
    whole.update({"L": values}, labels)
    left, right = ExcitationStats(), ExcitationStats()
    for start in range(0, 20, 6):
        left.update({"L": values[start : min(start + 6, 20)]}, labels[start : min(start + 6, 20)])
    right.update({"L": values[20:]}, labels[20:])
    left.merge(right)
    for cls in (ALL, "cat", "dog", "fish"):
        assert_allclose(left.mean("L", cls), whole.mean("L", cls))
        assert_allclose(left.std("L", cls), whole.std("L", cls))
        assert_allclose(left.std("L", cls), values[[cls in (ALL, l) for l in labels]].std(0, ddof=1))
        assert np.array_equal(left.histogram("L", cls), whole.histogram("L", cls))
    assert_allclose(left.specificity("L"), whole.specificity("L"))


def test_frames():
    stats = filled()
    frame = stats.to_frame()
    assert list(frame.columns) == ["layer", "class", "channel", "count", "mean", "std"]
    assert len(frame) == 6
    row = frame[(frame["class"] == "b") & (frame.channel == 1)].iloc[0]
    assert row["mean"] == pytest.approx(0.9) and row["count"] == 1
    hist = stats.histogram_frame()
    assert len(hist) == 3 * 50 and hist["count"].sum() == 12
    spec = stats.specificity_frame()
    assert spec.iloc[0]["layer"] == "L" and spec.iloc[0]["specificity"] == pytest.approx(stats.specificity("L"))


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"summaries\['L'\]\['excitation'\] must have shape \(N, D\) with N = 3"):
        ExcitationStats().update({"L": A}, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"masks must have shape \(N, G, H, W\)"):
        MaskStats().update({"M": A}, ["a", "b"])


def test_mask_statistics_by_hand():
    # Image 1: group 0 = [[0, 1], [1, 0]] (mean 0.5, var 0.25); group 1 all 0.5 (var 0).
    # Image 2: group 0 all 0.25 (var 0); group 1 = [[1, 1], [0, 0]] (mean 0.5, var 0.25).
    masks = np.array(
        [
            [[[0, 1], [1, 0]], [[0.5, 0.5], [0.5, 0.5]]],
            [[[0.25, 0.25], [0.25, 0.25]], [[1, 1], [0, 0]]],
        ]
    )
    mean, var = mask_summary(masks)
    assert_allclose(mean, [[0.5, 0.5], [0.25, 0.5]])
    assert_allclose(var, [[0.25, 0.0], [0.0, 0.25]])
    stats = MaskStats()
    stats.update({"M": masks}, ["x", "y"])
    assert_allclose(stats.group_mean("M"), [0.375, 0.5])
    assert_allclose(stats.group_variance("M"), [0.125, 0.125])
    assert_allclose(stats.group_mean("M", "x"), [0.5, 0.5])
    assert (stats.count(), stats.count("x"), stats.count("nope")) == (2, 1, 0)
    assert stats.histogram("M").sum() == 16 and stats.histogram("M", "y")[12] == 4  # 0.25 -> bin 12
    frame = stats.to_frame()
    assert list(frame.columns) == [
        "layer",
        "class",
        "group",
        "count",
        "mask_mean",
        "mask_mean_std",
        "spatial_variance",
        "spatial_variance_std",
    ]
    assert len(frame) == 3 * 2


def test_predicted_labels():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert predicted_labels(logits, ["tench", "goldfish", "shark"]) == ["goldfish", "tench"]


def test_a_class_called_all_images_is_not_the_aggregate():
    stats = ExcitationStats()
    stats.update({"L": np.array([[0.2], [0.4], [0.9]])}, ["all images", "all images", "other"])
    assert stats.classes == ["all images", "other"]
    assert (stats.count("all images"), stats.count(ALL), stats.count()) == (2, 3, 3)
    assert_allclose(stats.mean("L", "all images"), [0.3])
    assert_allclose(stats.mean("L", ALL), [0.5])
    frame = stats.to_frame()
    assert frame["class"].tolist() == [None, "all images", "other"] and frame["count"].tolist() == [3, 2, 1]
    import pickle

    assert pickle.loads(pickle.dumps(ALL)) is ALL and str(ALL) == "all images" and ALL != "all images"
