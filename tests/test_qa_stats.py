"""The drift test and histogram against values known independently of this code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stylefix_core.qa_report.stats import (
    asymptotic_pvalue,
    exact_pvalue,
    kolmogorov_sf,
    ks_2samp,
    score_histogram,
)

# scipy.stats.ks_2samp(A, B, method="exact") on these samples gives
# statistic 0.5394736842105263 and p-value 0.002300147696210758.
A = [0.61, 0.29, 0.06, 0.59, -1.73, -0.74, 0.51, -0.56, 0.39, 1.64, 0.05, -0.06]
A += [0.64, -0.82, 0.37, 1.77, 1.09, -1.28, 2.36, 1.31, 1.05, -0.52, -0.74, 0.71]
B = [1.92, 0.28, 1.81, 0.24, 1.37, 2.53, 1.48, 0.64, 2.69, 1.79, 1.16, 0.82, 2.15]
B += [0.97, 1.44, 2.02, 0.35, 1.58, 1.23]


def test_statistic_and_exact_pvalue_match_a_reference():
    result = ks_2samp(A, B)
    assert result.method == "exact" and (result.n, result.m) == (24, 19)
    assert result.statistic == pytest.approx(0.5394736842105263, abs=1e-12)
    assert result.pvalue == pytest.approx(0.002300147696210758, rel=1e-9)


@pytest.mark.parametrize("n, m", [(3, 3), (4, 5), (7, 2), (10, 10)])
def test_separated_samples_have_the_combinatorial_pvalue(n, m):
    # D = 1 only when one sample lies wholly below the other: 2 of C(n+m, n) orderings.
    result = ks_2samp(np.arange(n), np.arange(m) + 100)
    assert result.statistic == 1.0
    assert result.pvalue == pytest.approx(2 / math.comb(n + m, n), rel=1e-9)


def test_statistic_by_hand_with_ties():
    # ECDFs at 1: 2/3 vs 1/3, at 2: 1 vs 1; every ordering of 3 and 1 has D >= 2/3 below.
    assert ks_2samp([1, 1, 2], [1, 2, 2]).statistic == pytest.approx(1 / 3)
    small = ks_2samp([1, 2, 3], [2.5])
    assert small.statistic == pytest.approx(2 / 3) and small.pvalue == pytest.approx(1.0)
    assert small.location == 2.0


def test_identical_samples_do_not_drift():
    result = ks_2samp(A, A)
    assert result.statistic == 0.0 and result.pvalue == 1.0


@pytest.mark.parametrize(
    "lam, tail", [(1.2239, 0.10), (1.3581, 0.05), (1.6276, 0.01), (1.9495, 0.001)]
)
def test_kolmogorov_tail_matches_the_critical_values(lam, tail):
    assert kolmogorov_sf(lam) == pytest.approx(tail, rel=2e-3)


def test_asymptotic_pvalue_agrees_with_the_exact_one_for_large_samples():
    rng = np.random.default_rng(7)
    first, second = rng.normal(size=1500), rng.normal(0.1, size=1400)
    exact = ks_2samp(first, second)
    assert exact.method == "exact"
    asymptotic = asymptotic_pvalue(exact.statistic, exact.n, exact.m)
    assert 0.0 < exact.pvalue < 0.05
    assert asymptotic == pytest.approx(exact.pvalue, rel=0.05)
    assert ks_2samp(first, second, exact_limit=100).method == "asymptotic"


def test_exact_pvalue_of_zero_gap_is_one():
    assert exact_pvalue(0.0, 5, 7) == 1.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")]])
def test_no_verdict_on_empty_or_nan_samples(bad):
    with pytest.raises(ValueError):
        ks_2samp(bad, [1.0, 2.0])


def test_histogram_keeps_every_score_and_the_threshold_in_range():
    scores = np.concatenate([np.linspace(0, 3, 99), [500.0]])
    histogram = score_histogram(scores, threshold=3.5)
    assert histogram.total == 100
    assert histogram.overflow == 1  # the far outlier does not squash the rest
    assert histogram.edges[0] <= 0 and histogram.edges[-1] >= 3.5
    assert np.isclose(histogram.edges, 3.5).any()  # no bar straddles the threshold
    plain = score_histogram(np.array([1.0, 2.0, 2.5]), threshold=None)
    assert plain.total == 3 and plain.overflow == 0
