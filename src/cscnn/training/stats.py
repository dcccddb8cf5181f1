"""Confidence intervals for differences in AUC: over seeds (Student t) and over test requests (paired bootstrap).

Both are paired: a difference between two variants is taken seed by seed (runs with the same seed share the
data order), and every bootstrap resample draws the same requests for every scorer. A pair whose intervals do
not both lie on one side of 0 is either *equivalent* (two one-sided t tests put the difference within
±`EQUIVALENCE_MARGIN` and the request interval lies inside it) or *underpowered*, with the seeds a paired t test
would need to resolve a difference of the margin at 80 % power (noncentral t, from the measured spread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

AHEAD, BEHIND, UNDECIDED = "ahead", "behind", "not distinguishable"
EQUIVALENT, UNDERPOWERED = "equivalent", "underpowered"
EQUIVALENCE_MARGIN = 0.003  # AUC: differences smaller than this are not worth a variant (issue 19)
POWER, ALPHA = 0.8, 0.05
MAX_SEEDS = 100_000
RESAMPLE_CHUNK = 25  # resamples drawn per generator call: resample i is the same whatever the slice or scorer
BLOCK_ELEMENTS = 4_000_000  # weights held at a time (resamples x rows), about 32 MB


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    return float(scipy_stats.t.ppf(p, df))


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


def equivalent(values: Sequence[float], margin: float = EQUIVALENCE_MARGIN, alpha: float = ALPHA) -> bool:
    """Two one-sided t tests at level `alpha`: True when the mean of `values` (per-seed paired differences) is
    shown to lie within (-margin, +margin), i.e. its (1 - 2 alpha) Student-t interval lies inside it."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(arr) < 2:
        return False
    half = t_quantile(1 - alpha, len(arr) - 1) * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return -margin < arr.mean() - half and arr.mean() + half < margin


def paired_power(n: int, sd: float, effect: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t test at level `alpha` over `n` pairs, against a true mean difference of
    `effect` when the differences spread with standard deviation `sd` (noncentral t)."""
    df = n - 1
    critical = t_quantile(1 - alpha / 2, df)
    shift = effect / (sd / math.sqrt(n))
    return float(1 - scipy_stats.nct.cdf(critical, df, shift) + scipy_stats.nct.cdf(-critical, df, shift))


def seeds_needed(sd: float, effect: float = EQUIVALENCE_MARGIN, power: float = POWER, alpha: float = ALPHA) -> int:
    """The fewest pairs (seeds) with which a paired t test resolves a true difference of `effect` with `power`,
    given the measured `sd` of the paired differences (at least 2; MAX_SEEDS when more would be needed)."""
    if sd <= 0:
        return 2
    if paired_power(MAX_SEEDS, sd, effect, alpha) < power:
        return MAX_SEEDS
    low, high = 1, 2
    while paired_power(high, sd, effect, alpha) < power:
        low, high = high, high * 2
    while high - low > 1:  # power grows with n: the smallest n that reaches it lies in (low, high]
        mid = (low + high) // 2
        low, high = (mid, high) if paired_power(mid, sd, effect, alpha) < power else (low, mid)
    return high


def decide(
    differences: Sequence[float],
    seed_ci: Interval | None,
    request_ci: Interval | None,
    margin: float = EQUIVALENCE_MARGIN,
) -> tuple[str, int | None]:
    """The verdict of one pair and, when underpowered, the seeds it would need: ahead / behind when every
    interval agrees (`verdict`), equivalent when the seed TOST passes and the request interval lies within
    ±margin, else underpowered."""
    decided = verdict([seed_ci, request_ci] if request_ci is not None else [seed_ci])
    if decided != UNDECIDED:
        return decided, None
    inside = request_ci is None or (-margin < request_ci.low and request_ci.high < margin)
    if equivalent(differences, margin) and inside:
        return EQUIVALENT, None
    values = [v for v in differences if v is not None and np.isfinite(v)]
    if len(values) < 2:
        return UNDERPOWERED, None
    return UNDERPOWERED, seeds_needed(float(np.std(values, ddof=1)), margin)


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
