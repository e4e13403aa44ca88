"""Statistics against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from sevis.stats._accumulators import BIN_EDGES
from sevis.stats.classes import ALL
from sevis.stats.se import ExcitationStats, predicted_labels
from sevis.stats.sge import MaskStats, mask_summary

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
    assert np.isnan(stats.std("L", "b")).all()  # one image: undefined, not zero
    # all, channel 1: 0.2, 0.4, 0.9 around 0.5 -> (0.09 + 0.01 + 0.16) / 2
    assert_allclose(stats.std("L")[1], math.sqrt(0.13))


def test_specificity_by_hand():
    stats = filled()
    # channel 0: total SS = 0.04 + 0 + 0.04 = 0.08; between = 2 * 0.1^2 + 0.2^2 = 0.06
    # channel 1: total SS = 0.26; between = 2 * 0.2^2 + 0.4^2 = 0.24
    # within = 0.02 in both, over N - k = 1 degree of freedom: MS_within = 0.02
    # omega^2 = (between - (k - 1) MS_within) / (total + MS_within): 0.04 / 0.10 and 0.22 / 0.28
    assert_allclose(stats.specificity("L"), (0.04 / 0.10 + 0.22 / 0.28) / 2)
    assert_allclose(stats.eta_squared("L"), (0.06 / 0.08 + 0.24 / 0.26) / 2)
    one = ExcitationStats()
    one.update({"L": A}, ["a", "a"])
    assert math.isnan(one.specificity("L"))
    same = ExcitationStats()
    same.update({"L": np.array([[0.2, 0.7], [0.2, 0.7], [0.2, 0.7]])}, ["a", "b", "a"])
    assert same.specificity("L") == 0.0  # no channel varies: the class explains nothing
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


def test_many_interleaved_classes_against_numpy():
    """Batches mixing hundreds of classes (a shuffled ImageNet-like run) give each class
    numpy's moments, np.histogram's counts and the saturation counted directly, with
    values on every bin edge, outside [0, 1] and NaN."""
    rng = np.random.default_rng(1)
    n, d = 900, 33
    values = rng.random((n, d), dtype=np.float32)
    edges = np.float32([0.0, 0.01, 0.02, 0.3, 0.5, 0.98, 0.99, 1.0])
    below = np.nextafter(edges, np.float32(-1))  # one float32 step under each edge
    values[:16, :8], values[:16, 8:16] = edges, below
    values[16:20, :2] = [-0.5, 1.5]
    values[20, 3] = np.nan
    labels = [f"class {k}" for k in rng.integers(0, 300, n)]
    stats = ExcitationStats()
    for start in range(0, n, 128):
        stats.update({"L": values[start : start + 128]}, labels[start : start + 128])
    for cls in (ALL, *stats.classes[:40]):
        rows = values[[cls is ALL or label == cls for label in labels]]
        finite = rows[~np.isnan(rows)]
        assert np.array_equal(stats.histogram("L", cls), np.histogram(finite.clip(0, 1), bins=BIN_EDGES)[0])
        share = stats.saturation("L", cls)
        assert share["share_high"] == np.count_nonzero(finite >= 0.99) / finite.size
        assert share["share_low"] == np.count_nonzero(finite <= 0.01) / finite.size
        assert share["mean_gap"] == pytest.approx(np.abs(1.0 - finite.astype(np.float64)).mean(), rel=1e-12)
        if cls is not ALL and not np.isnan(rows).any():
            assert_allclose(stats.mean("L", cls), rows.mean(0, dtype=np.float64), rtol=1e-12, atol=1e-15)
            if len(rows) > 1:
                assert_allclose(stats.std("L", cls), rows.astype(np.float64).std(0, ddof=1), rtol=1e-9, atol=1e-15)


def test_fine_bins_exact_on_every_edge_with_many_classes():
    """The counting fast path (values in [0, 1], float64 slot + 100 x truncated) puts every
    float32 on, just under and just over each edge k/100 where np.histogram does, with
    thousands of classes (the largest slots), and x = 1 in the last bin."""
    from sevis.stats._accumulators import FINE_BINS, _Counts, _Scratch

    edges = np.float32(np.arange(FINE_BINS + 1) / FINE_BINS)
    probes = np.concatenate([edges, np.nextafter(edges, np.float32(-1)), np.nextafter(edges, np.float32(2))])
    probes = np.clip(probes, 0, 1)  # below 0 and above 1 would take the general path
    rng = np.random.default_rng(3)
    classes = 3000
    values = np.tile(probes, (classes, 1))
    codes = np.arange(classes)
    rng.shuffle(codes)
    counts = _Counts()
    counts.add(torch.from_numpy(codes), classes, torch.from_numpy(values.astype(np.float64)), _Scratch())
    expected = np.histogram(probes.astype(np.float64), bins=np.linspace(0, 1, FINE_BINS + 1))[0]
    assert counts.bins.shape[0] >= classes
    for i in (0, 1, classes // 2, classes - 1):
        assert np.array_equal(counts.of(i)[0], expected)
    assert counts.of(0)[2] == pytest.approx(np.sum(1 - probes.astype(np.float64)), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_on_every_edge_are_binned_as_np_histogram_wherever_their_row_is(dtype):
    """Each edge of BIN_EDGES, the saturation thresholds, and one step either side of each,
    in float32 and float64 (float64's 0.58 x 100 is 57.99999...: floor put it a bin low),
    at every row position of classes of several sizes: np.histogram's counts, and
    saturation as Methods states it (>= 0.99, <= 0.01)."""
    from sevis.stats._accumulators import FINE_EDGES

    assert np.array_equal(FINE_EDGES[::2], BIN_EDGES)  # bit for bit
    edges = np.concatenate([BIN_EDGES, [0.01, 0.99]]).astype(dtype)
    probes = np.concatenate([edges, np.nextafter(edges, dtype(-1)), np.nextafter(edges, dtype(2))]).clip(0, 1)
    rng = np.random.default_rng(5)
    classes = [f"c{i}" for i in range(7)]
    rows = np.stack([rng.permutation(probes) for _ in range(60)])  # each probe at many positions
    labels = [classes[i % 7] if i % 5 else "c0" for i in range(len(rows))]
    stats = ExcitationStats()
    for start in (0, 13, 40):  # uneven batches: a class's rows land in different slots
        stop = {0: 13, 13: 40, 40: len(rows)}[start]
        stats.update({"L": rows[start:stop]}, labels[start:stop])
    for cls in (ALL, *classes):
        mine = rows[[cls is ALL or label == cls for label in labels]].astype(np.float64)
        assert np.array_equal(stats.histogram("L", cls), np.histogram(mine, bins=BIN_EDGES)[0]), cls
        share = stats.saturation("L", cls)
        assert share["share_high"] == np.count_nonzero(mine >= 0.99) / mine.size
        assert share["share_low"] == np.count_nonzero(mine <= 0.01) / mine.size
    tensor = ExcitationStats()  # a torch tensor of either dtype takes the same path
    tensor.update({"L": torch.from_numpy(rows)}, labels)
    assert np.array_equal(tensor.histogram("L"), stats.histogram("L"))
    assert tensor.saturation("L") == stats.saturation("L")


def test_moments_keep_their_precision_far_from_zero():
    """Small spreads around large values (sums of squares would cancel without the shift)."""
    rng = np.random.default_rng(2)
    values = 1000.0 + 1e-3 * rng.standard_normal((500, 4))
    labels = [("a", "b")[i % 2] for i in range(500)]
    stats = ExcitationStats()
    for start in range(0, 500, 64):
        stats.update({"L": values[start : start + 64] + (start / 1e6)}, labels[start : start + 64])
    shifted = values + (np.arange(500) // 64 * 64 / 1e6)[:, None]
    assert_allclose(stats.std("L"), shifted.std(0, ddof=1), rtol=1e-9)
    assert_allclose(stats.std("L", "a"), shifted[::2].std(0, ddof=1), rtol=1e-9)


def test_merging_accumulators_that_began_on_different_data():
    """Each accumulator centres on its own first batch; merged they equal one pass."""
    rng = np.random.default_rng(3)
    low, high = rng.random((30, 5)) * 0.1, 0.9 + rng.random((50, 5)) * 0.1
    labels_low, labels_high = ["x", "y", "z"] * 10, ["y", "w"] * 20 + ["v"] * 10
    first, second, whole = ExcitationStats(), ExcitationStats(), ExcitationStats()
    first.update({"L": low}, labels_low)
    for start in range(0, 50, 40):  # a third class: the second's capacity doubles to four rows
        second.update({"L": high[start : start + 40]}, labels_high[start : start + 40])
    whole.update({"L": np.vstack([low, high])}, labels_low + labels_high)
    first.merge(second)
    assert len(second._moments["L"]["excitation"].n) == 4 > len(second.classes)
    assert first.classes == whole.classes == ["x", "y", "z", "w", "v"]
    for cls in (ALL, *whole.classes):
        assert first.count(cls) == whole.count(cls)
        assert_allclose(first.mean("L", cls), whole.mean("L", cls), rtol=1e-12)
        assert_allclose(first.std("L", cls), whole.std("L", cls), rtol=1e-9)
        assert np.array_equal(first.histogram("L", cls), whole.histogram("L", cls))
    assert first.saturation("L") == pytest.approx(whole.saturation("L"), rel=1e-12)


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


def omega_squared_by_f(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per channel, from scipy's one-way ANOVA F: (k - 1)(F - 1) / ((k - 1)(F - 1) + N)."""
    from scipy.stats import f_oneway

    groups = [values[labels == c] for c in np.unique(labels)]
    f = f_oneway(*groups).statistic
    k, n = len(groups), len(values)
    return (k - 1) * (f - 1) / ((k - 1) * (f - 1) + n)


@pytest.mark.parametrize(
    ("sizes", "seed"),
    [
        ([50] * 4, 1),  # the paper's 4 classes x 50 images
        (list(np.random.default_rng(7).multinomial(200 - 28, np.ones(28) / 28) + 1), 2),  # 28 unbalanced classes
        ([100] * 2, 3),
    ],
    ids=["4x50", "28-unbalanced", "2x100"],
)
def test_random_labels_give_specificity_zero_within_the_null_band(sizes, seed):
    from sevis.stats.measures import specificity_null

    rng = np.random.default_rng(seed)
    n = sum(sizes)
    values = rng.beta(2, 5, size=(n, 64))  # excitation-like values, no class effect at all
    labels = np.repeat([f"c{i}" for i in range(len(sizes))], sizes)
    rng.shuffle(labels)
    stats = ExcitationStats()
    stats.update({"L": values}, list(labels))
    assert_allclose(stats.specificity("L"), omega_squared_by_f(values, labels).mean(), rtol=1e-9)
    null = specificity_null(values, list(labels), permutations=300, seed=seed)
    assert null.low < stats.specificity("L") < null.high
    assert null.low < 0 < null.high and abs(null.mean) < (null.high - null.low) / 4
    # eta squared's chance level is (k - 1) / (N - 1), not 0: the bias omega squared removes.
    k = len(sizes)
    assert abs(stats.eta_squared("L") - (k - 1) / (n - 1)) < 0.3 * (k - 1) / (n - 1) + 0.01


def test_null_bands_equal_each_permutation_computed_directly():
    """The blocked, threaded permutations give, per layer, the mean and quantiles of the
    omega squared of each permutation of the labels computed one by one in float64 (2,500
    images of 500 classes: class sums in blocks of 524 columns, over several threads)."""
    from sevis.stats.measures import kept_positions, omega_squared, specificity_nulls

    rng = np.random.default_rng(5)
    n, k = 2500, 500
    codes = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    labels = [f"c{c:04d}" for c in codes]
    rows = {"A": rng.random((n, 1100), np.float32), "B": rng.beta(2, 5, (n, 90)).astype(np.float32)}
    rows["A"][:, 7] = 0.5  # a position that never varies is left out
    bands = specificity_nulls(rows, labels, permutations=40, seed=9)
    _, order = np.unique(labels, return_inverse=True)
    shuffle = np.random.default_rng(9)
    permuted = [shuffle.permutation(order) for _ in range(40)]
    for layer, values in rows.items():
        x = torch.from_numpy(values.astype(np.float64))
        ss_total = ((x - x.mean(0)) ** 2).sum(0).numpy()
        kept = kept_positions(ss_total, n)
        assert kept.sum() == values.shape[1] - (layer == "A")
        scores = []
        for codes_p in permuted:
            counts = np.bincount(codes_p, minlength=k)
            sums = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, torch.from_numpy(codes_p), x)
            scores.append(omega_squared(counts, sums.numpy() / counts[:, None], ss_total)[kept].mean())
        ordered = np.sort(scores)  # 40 permutations: the band from the smallest to the largest
        low, high = ordered[0], ordered[-1]
        assert bands[layer].permutations == 40 and bands[layer].images == n
        assert bands[layer].mean == pytest.approx(np.mean(scores), rel=1e-4, abs=1e-7)
        assert (bands[layer].low, bands[layer].high) == pytest.approx((low, high), rel=1e-4, abs=1e-7)


def test_band_ranks_give_the_coverage_they_state():
    """The band between the a-th smallest and the a-th largest of B permutation statistics
    holds an exchangeable statistic with probability (B + 1 - 2a) / (B + 1): 95 % exactly
    for 199 (a = 5) and 39 (a = 1); with np.quantile's interpolation 200 gave 94 %."""
    from sevis.stats.measures import PERMUTATIONS, band_ranks

    assert PERMUTATIONS == 199 and band_ranks(199) == (5, 195, 0.95)
    assert band_ranks(39) == (1, 39, 0.95) and band_ranks(200)[:2] == (5, 196)
    assert band_ranks(10)[:2] == (1, 10)  # too few for 95 %: the widest band, and says so
    assert band_ranks(10)[2] == pytest.approx(9 / 11)
    # by simulation: exchangeable values, the statistic one of them
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((20_000, 200))
    ordered = np.sort(draws[:, 1:], axis=1)
    inside = (ordered[:, 4] <= draws[:, 0]) & (draws[:, 0] <= ordered[:, 194])
    assert abs(inside.mean() - 0.95) < 0.005


def test_one_torch_thread_is_this_threads_and_restored():
    """Inside the block torch runs this thread's ops on one thread; on leaving, the count
    before comes back, for this thread and for threads started afterwards, also when
    blocks overlap in two threads."""
    import threading

    from sevis._threads import one_torch_thread, workers

    before = torch.get_num_threads()
    seen: dict[str, int] = {}
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with one_torch_thread():
            seen["other"] = torch.get_num_threads()
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    with one_torch_thread():
        seen["here"] = torch.get_num_threads()
        seen["workers"] = workers()
        leave.set()
        thread.join(10)
    seen["after"] = torch.get_num_threads()
    late = threading.Thread(target=lambda: seen.update(late=torch.get_num_threads()))
    late.start()
    late.join(10)
    assert seen == {"other": 1, "here": 1, "workers": min(4, before), "after": before, "late": before}


def test_a_torch_threads_block_inside_another_gives_the_outer_one_its_count_back():
    from sevis._threads import one_torch_thread, torch_threads

    before = torch.get_num_threads()
    with torch_threads(3):
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_a_class_effect_is_far_above_the_null_band():
    from sevis.stats.measures import specificity_null

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c", "d"], 50)
    values = rng.beta(2, 5, size=(200, 32)) + 0.1 * (labels == "a")[:, None]
    stats = ExcitationStats()
    stats.update({"L": values}, list(labels))
    null = specificity_null(values, list(labels), permutations=100)
    assert stats.specificity("L") > 10 * null.high > 0


def test_a_saturated_layer_has_saturation_one_and_specificity_zero():
    rng = np.random.default_rng(4)
    labels = list(np.repeat(["a", "b", "c", "d"], 50))
    saturated = 1.0 - rng.uniform(0, 0.005, size=(200, 128))  # every gate in [0.995, 1]
    stats = ExcitationStats()
    stats.update({"L": saturated, "flat": np.ones((200, 16))}, labels)
    sat = stats.saturation("L")
    assert sat["share_high"] == 1.0 and sat["share_low"] == 0.0
    assert_allclose(sat["mean_gap"], np.abs(1 - saturated).mean())
    assert abs(stats.specificity("L")) < 0.01  # no class effect: omega squared about 0
    assert stats.saturation("flat") == {"share_high": 1.0, "share_low": 0.0, "mean_gap": 0.0}
    assert stats.specificity("flat") == 0.0  # nothing varies
    frame = stats.specificity_frame()
    assert list(frame["layer"]) == ["L", "flat"] and list(frame["positions_kept"]) == [128, 0]
    assert list(frame["share_high"]) == [1.0, 1.0]


def test_float32_rounding_does_not_count_as_variation():
    rng = np.random.default_rng(5)
    labels = list(np.repeat(["a", "b"], 20))
    values = rng.beta(2, 5, size=(40, 63))
    stats = ExcitationStats()
    stats.update({"L": values}, labels)
    # One more channel, constant but for float32 rounding that follows the class exactly.
    rounding = np.float32(0.7) + np.where(np.array(labels) == "a", 0.0, np.spacing(np.float32(0.7)))
    lifted = ExcitationStats()
    lifted.update({"L": np.column_stack([values, rounding])}, labels)
    assert lifted.specificity("L") == pytest.approx(stats.specificity("L"), rel=1e-12)


def test_one_image_classes_selectivity_and_reference_lines():
    stats = filled()  # class b has one image
    assert stats.small_classes() == ["b"]
    frame = stats.to_frame()
    assert frame[frame["class"] == "b"]["std"].isna().all()  # exported as empty, not 0
    assert frame.to_csv(index=False).splitlines()[-1] == "L,b,1,1,0.9,"
    # class means: channel 0 a 0.2, b 0.5; channel 1 a 0.3, b 0.9
    assert_allclose(stats.mean_of_class_means("L"), [0.35, 0.6])  # the paper's reference
    assert_allclose(stats.mean("L"), [0.3, 0.5])  # all images: weighted by class size
    assert_allclose(stats.selectivity("L"), [(0.5 - 0.2) / (0.5 + 0.2), (0.9 - 0.3) / (0.9 + 0.3)])
    singletons = ExcitationStats()
    singletons.update({"L": A}, ["a", "b"])
    assert math.isnan(singletons.specificity("L"))  # no within-class variation to compare with
    assert np.isnan(singletons.std("L", "a")).all()
