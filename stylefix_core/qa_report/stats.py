"""Numbers behind the QA report: the score histogram and the two-sample drift test.

numpy only (scipy is not a dependency). The drift test is the two-sample
Kolmogorov-Smirnov test, two-sided: the statistic is the largest gap between
the two empirical CDFs, and its p-value is exact (counting the lattice paths
that stay inside the band, as in Hodges 1958) while both samples hold at most
``EXACT_LIMIT`` values, and from the asymptotic Kolmogorov distribution with
Stephens' small-sample correction above that, where the exact count would
cost ``n * m`` steps. The exact p-value assumes no ties, as scipy's does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 10_000
_SERIES_TERMS = 100


@dataclass(frozen=True)
class KSResult:
    """A two-sample KS test; ``location`` is the score where the ECDFs differ most."""

    statistic: float
    pvalue: float
    n: int
    m: int
    method: str  # "exact" or "asymptotic"
    location: float


@dataclass(frozen=True)
class Histogram:
    """Equal-width bins over ``edges``; values above the last edge count as ``overflow``."""

    edges: np.ndarray
    counts: np.ndarray
    overflow: int

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.overflow


def ks_2samp(first: np.ndarray, second: np.ndarray, exact_limit: int = EXACT_LIMIT) -> KSResult:
    """Two-sided two-sample KS test of ``first`` against ``second``.

    Raises ``ValueError`` when either sample is empty or holds NaN, since a
    drift verdict on no data would be a made-up number.
    """
    a = np.sort(np.asarray(first, dtype=np.float64).ravel())
    b = np.sort(np.asarray(second, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("samples must not hold NaN")
    pooled = np.concatenate([a, b])
    gaps = np.abs(
        np.searchsorted(a, pooled, side="right") / a.size
        - np.searchsorted(b, pooled, side="right") / b.size
    )
    where = int(np.argmax(gaps))
    statistic = float(gaps[where])
    n, m = a.size, b.size
    if max(n, m) <= exact_limit:
        pvalue, method = exact_pvalue(statistic, n, m), "exact"
    else:
        pvalue, method = asymptotic_pvalue(statistic, n, m), "asymptotic"
    return KSResult(statistic, pvalue, n, m, method, float(pooled[where]))


def exact_pvalue(statistic: float, n: int, m: int) -> float:
    """P(D >= statistic) for samples of sizes n and m from one continuous distribution.

    D only takes values k / lcm(n, m), so the band ``|i/n - j/m| < D`` is
    checked in integers; each row of the path count is a cumulative sum over
    the row's band, rescaled so that counts of order C(n+m, n) never overflow.
    """
    lcm = n * m // math.gcd(n, m)
    step_i, step_j = lcm // n, lcm // m
    band = round(statistic * lcm)
    if band <= 0:
        return 1.0
    previous = np.zeros(m + 1)
    previous[0] = 1.0
    log_scale = 0.0
    for i in range(n + 1):
        low = max(0, (i * step_i - band) // step_j + 1)
        high = min(m, -(-(i * step_i + band) // step_j) - 1)
        row = np.zeros(m + 1)
        if low <= high:
            row[low : high + 1] = np.cumsum(previous[low : high + 1])
        peak = row.max()
        if peak == 0.0:
            return 1.0
        row /= peak
        log_scale += math.log(peak)
        previous = row
    if previous[m] == 0.0:
        return 1.0
    log_inside = math.log(previous[m]) + log_scale - _log_binomial(n + m, n)
    return float(min(1.0, max(0.0, -math.expm1(log_inside))))


def asymptotic_pvalue(statistic: float, n: int, m: int) -> float:
    """Kolmogorov's limiting distribution at Stephens' corrected ``lambda``."""
    effective = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((effective + 0.12 + 0.11 / effective) * statistic)


def kolmogorov_sf(lam: float) -> float:
    """Q(lambda) = 2 * sum_k (-1)^(k-1) exp(-2 k^2 lambda^2), the KS tail probability."""
    if lam < 0.2:  # the series converges slowly here, and Q is 1 to 13 digits
        return 1.0
    k = np.arange(1, _SERIES_TERMS + 1, dtype=np.float64)
    signs = np.where(k % 2 == 1, 1.0, -1.0)
    total = 2.0 * float(np.sum(signs * np.exp(-2.0 * k * k * lam * lam)))
    return min(1.0, max(0.0, total))


def score_histogram(scores: np.ndarray, threshold: float | None, bins: int = 0) -> Histogram:
    """Bins wide enough to show the bulk and the threshold; far outliers go to ``overflow``.

    The range runs from the smallest score (or the threshold) to the largest,
    unless the largest lies far above the 99th percentile: then the range stops
    at that percentile (or just past the threshold) so a few extreme images do
    not squeeze everything else into one bar. The threshold falls on a bin
    edge, so no bar mixes flagged and passed images.
    """
    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Histogram(np.array([0.0, 1.0]), np.zeros(1, dtype=np.int64), 0)
    marks = [values.min(), values.max()] + ([threshold] if threshold is not None else [])
    low, high = float(min(marks)), float(max(marks))
    bulk = max(float(np.quantile(values, 0.99)), threshold if threshold is not None else -np.inf)
    if high > low and (high - low) > 1.5 * (bulk - low) > 0:
        high = bulk + 0.05 * (bulk - low)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    count = bins or int(min(40, max(10, round(2 * math.sqrt(values.size)))))
    edges = _edges(low, high, count, threshold)
    high = float(edges[-1])
    inside = values[values <= high]
    counts, _ = np.histogram(inside, bins=edges)
    return Histogram(edges, counts.astype(np.int64), int(values.size - inside.size))


def _edges(low: float, high: float, count: int, threshold: float | None) -> np.ndarray:
    """About ``count`` equal bins covering [low, high], shifted to put the threshold on an edge."""
    width = (high - low) / count
    if threshold is None:
        return np.linspace(low, high, count + 1)
    first = math.floor((low - threshold) / width + 1e-9)
    last = math.ceil((high - threshold) / width - 1e-9)
    return threshold + width * np.arange(first, max(last, first + 1) + 1)


def _log_binomial(total: int, chosen: int) -> float:
    return math.lgamma(total + 1) - math.lgamma(chosen + 1) - math.lgamma(total - chosen + 1)
