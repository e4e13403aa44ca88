"""Which channels separate two classes: per-position Welch t-tests with the Benjamini-Hochberg
false discovery rate, from the per-class moments alone (no rows are read again).

    table = sevis.stats.two_class_test(stats, "SE_5_2", "goldfish", "pug")
    table[table.significant].head(20)      # the channels that separate them, most separating first
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .classes import ClassStats

__all__ = ["FDR", "benjamini_hochberg", "two_class_test"]


FDR = 0.05
"""The false discovery rate a two-class test controls by default."""


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of ``p``; NaN stays NaN and does not
    count among the m tests. q_(i) = min over j >= i of m p_(j) / j, at most 1: the
    positions with q <= alpha are those the step-up procedure rejects at FDR alpha."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if not len(tested):
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def two_class_test(
    stats: ClassStats, layer: str, a: str, b: str, *, field: str | None = None, fdr: float = FDR
) -> pd.DataFrame:
    """Per position (channel, group) of ``layer``: does class ``a``'s mean differ from ``b``'s?

    Welch's t (unequal variances) with Welch-Satterthwaite degrees of freedom and a
    two-sided p, from each class's count, mean and sample standard deviation (the same as
    ``scipy.stats.ttest_ind(..., equal_var=False)`` on the images' values); q-values by
    Benjamini-Hochberg over the positions whose t is defined (a position constant in both
    classes has none); the effect size is Hedges' g (the difference over the pooled
    standard deviation, corrected for small samples).

    Returns:
        One row per position, most separating first (by p, then by the size of the
        difference): ``layer``, the position (``stats.index_name``), ``mean_a``,
        ``mean_b``, ``difference`` (a - b), ``std_a``, ``std_b``, ``t``, ``df``, ``p``,
        ``q``, ``effect`` (Hedges' g) and ``significant`` (q <= ``fdr``); the classes and
        their image counts are in ``attrs``.

    Raises:
        KeyError: no such layer or class.
        ValueError: a and b the same, or a class with fewer than two images (its spread
            is undefined).
    """
    if a == b:
        raise ValueError(f"two different classes are needed; got {a[:100]!r} twice")
    n_a, n_b = stats.count(a), stats.count(b)
    for name, n in ((a, n_a), (b, n_b)):
        if name not in stats.classes:
            raise KeyError(f"no class {name[:100]!r}; have {[c[:100] for c in stats.classes[:10]]}")
        if n < 2:
            raise ValueError(f"class {name[:100]!r} has {n} image(s); a test needs at least two in each class")
    mean_a, mean_b = stats.mean(layer, a, field), stats.mean(layer, b, field)
    std_a, std_b = stats.std(layer, a, field), stats.std(layer, b, field)
    var_a, var_b = std_a**2 / n_a, std_b**2 / n_b
    se2 = var_a + var_b
    difference = mean_a - mean_b
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se2 > 0, difference / np.sqrt(se2), np.nan)
        df = np.where(se2 > 0, se2**2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1)), np.nan)
        p = np.where(np.isnan(t), np.nan, 2 * scipy_stats.t.sf(np.abs(t), df))
        pooled = np.sqrt(((n_a - 1) * std_a**2 + (n_b - 1) * std_b**2) / (n_a + n_b - 2))
        correction = 1 - 3 / (4 * (n_a + n_b) - 9)
        effect = np.where(pooled > 0, correction * difference / pooled, np.nan)
    q = benjamini_hochberg(p)
    frame = pd.DataFrame(
        {
            "layer": layer,
            stats.index_name: np.arange(len(difference)),
            "mean_a": mean_a,
            "mean_b": mean_b,
            "difference": difference,
            "std_a": std_a,
            "std_b": std_b,
            "t": t,
            "df": df,
            "p": p,
            "q": q,
            "effect": effect,
            "significant": q <= fdr,
        }
    )
    frame = frame.assign(_size=-np.abs(difference)).sort_values(["p", "_size"], kind="stable", na_position="last")
    frame = frame.drop(columns="_size").reset_index(drop=True)
    frame.attrs.update(a=a, b=b, count_a=n_a, count_b=n_b, fdr=fdr)
    return frame
