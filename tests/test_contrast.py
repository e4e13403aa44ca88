"""Two-class tests (sevis.stats.contrast) against scipy's Welch t-test on the images' own
values and the Benjamini-Hochberg procedure written out step by step."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sevis.stats import ExcitationStats, benjamini_hochberg, two_class_test


def bh_by_hand(p: np.ndarray, alpha: float) -> np.ndarray:
    """The step-up procedure as Benjamini and Hochberg (1995) state it: the largest i with
    p_(i) <= i alpha / m, and every hypothesis up to it rejected."""
    order = np.argsort(p)
    m = len(p)
    below = np.flatnonzero(p[order] <= np.arange(1, m + 1) * alpha / m)
    rejected = np.zeros(m, bool)
    if len(below):
        rejected[order[: below[-1] + 1]] = True
    return rejected


def test_benjamini_hochberg_rejects_what_the_step_up_procedure_rejects():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=900), rng.uniform(0, 1e-3, 100)])
    q = benjamini_hochberg(p)
    for alpha in (0.01, 0.05, 0.2):
        assert np.array_equal(q <= alpha, bh_by_hand(p, alpha))
    assert np.all((q >= p) & (q <= 1))
    # NaN (an undefined test) is not one of the m tests
    with_nan = np.concatenate([p, [np.nan] * 50])
    assert np.array_equal(benjamini_hochberg(with_nan)[:1000], q, equal_nan=True)
    assert np.isnan(benjamini_hochberg(with_nan)[1000:]).all()


@pytest.fixture
def two_classes():
    """Classes of 40 and 25 images over 300 channels; 30 channels differ in mean, and the
    classes' spreads differ (Welch's case); batches mix the classes and a third one."""
    rng = np.random.default_rng(1)
    a = rng.beta(5, 2, (40, 300))
    b = (rng.beta(5, 2, (25, 300)) - 5 / 7) * 1.3 + 5 / 7  # the same mean, a wider spread
    b[:, 270:] -= 0.3  # the last 30 channels: lower in b
    rows = np.concatenate([a, b, rng.random((10, 300))])
    labels = ["goldfish"] * 40 + ["pug"] * 25 + ["plane"] * 10
    order = rng.permutation(len(rows))
    stats = ExcitationStats()
    for start in range(0, len(rows), 16):
        pick = order[start : start + 16]
        stats.update({"SE_5_2": rows[pick]}, [labels[i] for i in pick])
    return stats, a, b


def test_welch_t_equals_scipys_on_the_images_values(two_classes):
    stats, a, b = two_classes
    table = two_class_test(stats, "SE_5_2", "goldfish", "pug").sort_values("channel")
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose(table.t, expected.statistic, rtol=1e-9)
    np.testing.assert_allclose(table.p, expected.pvalue, rtol=1e-7, atol=1e-300)
    np.testing.assert_allclose(table.df, expected.df, rtol=1e-9)
    np.testing.assert_allclose(table.difference, a.mean(0) - b.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(table.q <= 0.05, bh_by_hand(expected.pvalue, 0.05))
    pooled = np.sqrt((39 * a.var(0, ddof=1) + 24 * b.var(0, ddof=1)) / 63)
    np.testing.assert_allclose(table.effect, (1 - 3 / (4 * 65 - 9)) * (a.mean(0) - b.mean(0)) / pooled, rtol=1e-9)
    assert table.attrs == {"a": "goldfish", "b": "pug", "count_a": 40, "count_b": 25, "fdr": 0.05}


def test_the_ranking_puts_the_separating_channels_first(two_classes):
    stats, _, _ = two_classes
    table = two_class_test(stats, "SE_5_2", "goldfish", "pug")
    assert table.p.is_monotonic_increasing
    top = set(table.channel[table.significant])
    assert len(top & set(range(270, 300))) >= 25 and len(top - set(range(270, 300))) <= 3
    assert table.significant.sum() == len(top)


def test_undefined_tests_and_bad_requests():
    stats = ExcitationStats()
    stats.update({"L": np.array([[0.2, 0.1], [0.2, 0.3], [0.2, 0.9], [0.2, 0.7], [0.4, 0.5]])}, list("aabbc"))
    table = two_class_test(stats, "L", "a", "b").set_index("channel")
    assert np.isnan(table.loc[0, "t"]) and np.isnan(table.loc[0, "q"]) and not table.loc[0, "significant"]
    assert table.loc[1, "p"] == pytest.approx(scipy_stats.ttest_ind([0.1, 0.3], [0.9, 0.7], equal_var=False).pvalue)
    assert table.loc[1, "q"] == table.loc[1, "p"]  # the one defined test: m = 1
    with pytest.raises(ValueError, match="'c' has 1 image"):
        two_class_test(stats, "L", "a", "c")
    with pytest.raises(ValueError, match="two different classes"):
        two_class_test(stats, "L", "a", "a")
    with pytest.raises(KeyError, match="no class 'd'"):
        two_class_test(stats, "L", "a", "d")
