"""Confidence intervals for differences in AUC: over seeds (Student t) and over test requests (paired bootstrap).

Both are paired: a difference between two variants is taken seed by seed (runs with the same seed share the
data order), and every bootstrap resample draws the same requests for every scorer. NumPy only: the Student
t quantile is computed here (exact for integer degrees of freedom), so no statistics package is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AHEAD, BEHIND, UNDECIDED = "ahead", "behind", "not distinguishable"
RESAMPLE_CHUNK = 25  # resamples drawn per generator call: resample i is the same whatever the slice or scorer
BLOCK_ELEMENTS = 4_000_000  # weights held at a time (resamples x rows), about 32 MB


def _t_central_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for k in range(1, (df - 3) // 2 + 1):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile (p > 0.5) of Student's t with integer `df` >= 1, by bisection on the exact CDF."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    if df > 2000:  # the series has df/2 terms; the Cornish-Fisher expansion around the normal is exact to 1e-9
        z = _normal_quantile(p)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    mass = 2 * p - 1
    lo, hi = 0.0, 1.0
    while _t_central_mass(hi, df) < mass:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central_mass(mid, df) < mass else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def _normal_quantile(p: float) -> float:
    lo, hi = 0.0, 40.0
    while hi - lo > 1e-13:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_list(self) -> list[float]:
        return [self.low, self.high]


def seed_interval(values: Sequence[float], level: float = 0.95) -> Interval | None:
    """Mean of `values` (e.g. per-seed differences) with its Student-t interval; None for fewer than two."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(arr) < 2:
        return None
    mean = float(arr.mean())
    half = t_quantile(0.5 + level / 2, len(arr) - 1) * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return Interval(mean, mean - half, mean + half)


def percentile_interval(estimate: float, draws: np.ndarray, level: float = 0.95) -> Interval | None:
    """The percentile interval of bootstrap `draws` (undefined draws, NaN, left out) around `estimate`."""
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return Interval(float(estimate), float(low), float(high))


def verdict(intervals: Sequence[Interval | None]) -> str:
    """`ahead` when every interval lies above 0, `behind` when every one lies below, else not distinguishable.
    A missing interval (too few seeds, a slice with one class) never decides: it gives not distinguishable."""
    if not intervals or any(i is None for i in intervals):
        return UNDECIDED
    if all(i.low > 0 for i in intervals):
        return AHEAD
    if all(i.high < 0 for i in intervals):
        return BEHIND
    return UNDECIDED


def request_counts(first: int, n: int, n_requests: int, seed: int) -> np.ndarray:
    """How often each request is drawn in resamples `first`..`first+n-1`, shape (n, n_requests).

    Each resample draws `n_requests` requests with replacement. Resample i depends on (seed, i) only.
    """
    rows = []
    for chunk in range(first // RESAMPLE_CHUNK, (first + n - 1) // RESAMPLE_CHUNK + 1):
        rng = np.random.default_rng([seed, chunk])
        drawn = rng.integers(0, n_requests, size=(RESAMPLE_CHUNK, n_requests))
        offsets = np.arange(RESAMPLE_CHUNK)[:, None] * n_requests
        counts = np.bincount((drawn + offsets).ravel(), minlength=RESAMPLE_CHUNK * n_requests)
        rows.append(counts.reshape(RESAMPLE_CHUNK, n_requests))
    counts = np.concatenate(rows)
    start = first - (first // RESAMPLE_CHUNK) * RESAMPLE_CHUNK
    return counts[start : start + n]


def weighted_aucs(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC under each row of `weights` (shape (k, rows)): a row's weight counts it that many times. Ties in
    `scores` count one half, as in `metrics.auc`; NaN where a weighting leaves only one class."""
    labels = np.asarray(labels, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if not len(labels):
        return np.full(len(weights), np.nan)
    order = np.argsort(scores, kind="stable")
    ordered = np.asarray(scores, dtype=np.float64)[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # the groups of tied scores
    w, y = weights[:, order], labels[order]
    pos = np.add.reduceat(np.where(y, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def bootstrap_aucs(
    labels: np.ndarray, scores: np.ndarray, request: np.ndarray, n_requests: int, resamples: int, seed: int
) -> np.ndarray:
    """The AUC of `scores` in each of `resamples` request resamples (NaN where a resample has one class).

    `request` is each row's request index in 0..n_requests-1. A slice of the rows (cold-start items, one
    category) passes its rows with the same `n_requests` and `seed`: it then sees the same resamples.
    """
    out = np.full(resamples, np.nan)
    if not len(labels) or not resamples:
        return out
    per_block = max(RESAMPLE_CHUNK, BLOCK_ELEMENTS // len(labels) // RESAMPLE_CHUNK * RESAMPLE_CHUNK)
    for first in range(0, resamples, per_block):
        n = min(per_block, resamples - first)
        weights = request_counts(first, n, n_requests, seed)[:, request]
        out[first : first + n] = weighted_aucs(labels, scores, weights)
    return out
