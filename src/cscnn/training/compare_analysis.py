"""The statistics of `cscnn compare`: paired differences in test AUC with two 95% intervals, on every slice.

Slices: all test rows, the rows of cold-start items (never seen in training) and each category. In each,
every variant's AUC per seed (mean and Student-t half-width over seeds), the oracle's AUC when the world
holds the true click probabilities, and paired differences against the references: over seeds (Student t on
the per-seed differences) and over requests (paired bootstrap: the same resampled requests for both sides,
each side's AUC averaged over its seeds). Verdict: ahead / behind only when both intervals agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cscnn.errors import CSCNNError
from cscnn.training.metrics import auc
from cscnn.training.stats import Interval, bootstrap_aucs, decide, percentile_interval, seed_interval

NO_IMAGE, CNN = "no_image", "cnn"
CEILING = "attributes"  # the diagnostic variant fed the true attributes: what the CTR network can use
ATTENTION_BASELINES = ("se", "cbam")  # the best of these (by mean test AUC) is the third reference
CATEGORY_PAIRS = (("cscnn", CNN), ("cscnn", NO_IMAGE))  # the per-category differences reported
ALL, COLD, CATEGORY = "all", "cold", "category:"
ORACLE = "oracle"


@dataclass
class HeldOutRows:
    """The test days' impressions in the order `score_days` scores them: each row's request and label, and
    the world's true click probability when it has one."""

    source: str  # the world they were read from (the oracle's bootstrap draws are kept per world)
    days: list[str]
    request: np.ndarray  # request index per row, 0..n_requests-1
    n_requests: int
    label: np.ndarray
    truth: np.ndarray | None
    truth_note: str  # where the truth came from, or why there is none


def _aligned(scores: dict[tuple[str, int], dict[str, np.ndarray]], held: HeldOutRows) -> dict[str, np.ndarray]:
    """The label, category and cold-start flag of every test row, checked to be the same rows in every run
    and in the world (same order): a run scored on other rows must not be paired with the others."""
    (first_key, first), *others = scores.items()
    if len(first["label"]) != len(held.label) or not np.array_equal(first["label"], held.label):
        raise CSCNNError(
            f"run {first_key[0]} seed {first_key[1]}: its {len(first['label'])} test labels do not match the "
            f"world's {len(held.label)} test rows of {held.days} in file order; the runs were scored on other "
            "data (delete the runs folder, or compare on the world they were made on)"
        )
    for key, other in others:
        for name in ("label", "category", "cold"):
            if not np.array_equal(np.asarray(other[name]), np.asarray(first[name])):
                raise CSCNNError(f"run {key[0]} seed {key[1]}: its test rows ({name}) differ from run {first_key}")
    return {"label": held.label.astype(bool), "category": np.asarray(first["category"]), "cold": first["cold"]}


def references(rows: list[dict]) -> list[tuple[str, str]]:
    """(role, variant) of the references present: no_image, cnn, and the better of se / cbam."""
    means = {}
    for v in dict.fromkeys(r["variant"] for r in rows):
        values = [r["auc"] for r in rows if r["variant"] == v and r["auc"] is not None]
        means[v] = float(np.mean(values)) if values else float("-inf")
    found = [(name, name) for name in (NO_IMAGE, CNN) if name in means]
    attention = [v for v in ATTENTION_BASELINES if v in means]
    if attention:
        best = max(attention, key=lambda v: means[v])
        found.append(("best of " + "/".join(ATTENTION_BASELINES) if len(attention) > 1 else best, best))
    return found


def _interval(i: Interval | None) -> list[float] | None:
    return i.to_list() if i is not None else None


class _Slice:
    """One slice of the test rows: point AUCs and bootstrap draws of every run (and the oracle) on it."""

    def __init__(self, name: str, rows: np.ndarray, context: dict) -> None:
        self.name, self.rows, self.ctx = name, rows, context
        self.label = context["base"]["label"][rows]
        self.seeds = context["seeds"]

    def auc(self, key: tuple[str, int | None]) -> float | None:
        return auc(self.label, self._prob(key))

    def _prob(self, key: tuple[str, int | None]) -> np.ndarray:
        held: HeldOutRows = self.ctx["held"]
        return held.truth[self.rows] if key[0] == ORACLE else self.ctx["scores"][key]["prob"][self.rows]

    def draws(self, key: tuple[str, int | None]) -> np.ndarray:
        cache, resamples, seed = self.ctx["cache"], self.ctx["resamples"], self.ctx["seed"]
        cache_key = ("bootstrap", self.ctx["held"].source, key, self.name, resamples, seed)
        if cache_key not in cache:
            held: HeldOutRows = self.ctx["held"]
            request = held.request[self.rows]
            cache[cache_key] = bootstrap_aucs(self.label, self._prob(key), request, held.n_requests, resamples, seed)
        return cache[cache_key]

    def mean_draws(self, variant: str, seeds: list[int]) -> np.ndarray:
        return np.mean([self.draws((variant, s)) for s in seeds], axis=0)

    def variant_summary(self, variant: str) -> dict:
        per_seed = {s: self.auc((variant, s)) for s in self.seeds[variant]}
        values = [a for a in per_seed.values() if a is not None]
        ci = seed_interval(values)
        return {
            "per_seed": {str(s): a for s, a in per_seed.items()},
            "mean": float(np.mean(values)) if values else None,
            "ci_half_width": (ci.high - ci.estimate) if ci is not None else None,
        }

    def pair(self, variant: str, reference: str, role: str) -> dict:
        both = [s for s in self.seeds[variant] if s in self.seeds[reference]]
        diffs = {}
        for s in both:
            a, b = self.auc((variant, s)), self.auc((reference, s))
            if a is not None and b is not None:
                diffs[s] = a - b
        estimate = float(np.mean(list(diffs.values()))) if diffs else None
        seed_ci = seed_interval(list(diffs.values()))
        boot_ci = None
        if self.ctx["resamples"] and diffs:
            used = list(diffs)
            draws = self.mean_draws(variant, used) - self.mean_draws(reference, used)
            boot_ci = percentile_interval(estimate, draws)
        decided, needed = decide(list(diffs.values()), seed_ci, boot_ci)
        return {
            "variant": variant,
            "reference": reference,
            "role": role,
            "difference": estimate,
            "per_seed": {str(s): d for s, d in diffs.items()},
            "seeds_ahead": sum(d > 0 for d in diffs.values()),
            "seed_ci": _interval(seed_ci),
            "bootstrap_ci": _interval(boot_ci),
            "sd": float(np.std(list(diffs.values()), ddof=1)) if len(diffs) > 1 else None,
            "verdict": decided,
            "seeds_needed": needed,
        }

    def share(self, variant: str, oracle_auc: float) -> dict:
        """(variant - no_image) / (oracle - no_image): the share of the visual signal the variant recovers."""
        both = [s for s in self.seeds[variant] if s in self.seeds[NO_IMAGE]]
        v = [self.auc((variant, s)) for s in both]
        n = [self.auc((NO_IMAGE, s)) for s in both]
        if not both or None in v or None in n or oracle_auc - float(np.mean(n)) <= 0:
            return {"estimate": None, "bootstrap_ci": None}
        estimate = (np.mean(v) - np.mean(n)) / (oracle_auc - np.mean(n))
        ci = None
        if self.ctx["resamples"]:
            base = self.mean_draws(NO_IMAGE, both)
            gap = self.draws((ORACLE, None)) - base
            with np.errstate(divide="ignore", invalid="ignore"):
                draws = np.where(gap > 0, (self.mean_draws(variant, both) - base) / gap, np.nan)
            ci = percentile_interval(float(estimate), draws)
        return {"estimate": float(estimate), "bootstrap_ci": _interval(ci)}


def _slice_result(part: _Slice, variants: list[str], pairs: list[tuple[str, str, str]], with_share: bool) -> dict:
    has_truth = part.ctx["held"].truth is not None
    oracle = part.auc((ORACLE, None)) if has_truth else None
    result = {
        "n": len(part.rows),
        "clicks": int(part.label.sum()),
        "variants": {v: part.variant_summary(v) for v in variants},
        "oracle_auc": oracle,
        "pairs": [part.pair(v, ref, role) for v, ref, role in pairs],
    }
    if with_share and oracle is not None and NO_IMAGE in variants:
        shares = {v: part.share(v, oracle) for v in variants if v != NO_IMAGE}
        result["visual_share"] = shares
        ceiling = shares.get(CEILING, {}).get("estimate")
        if ceiling is not None and ceiling > 0:  # each variant's share as a fraction of the ceiling's
            result["ceiling_share"] = {
                v: (s["estimate"] / ceiling if s["estimate"] is not None else None) for v, s in shares.items()
            }
    return result


def analyse(
    rows: list[dict],
    scores: dict[tuple[str, int], dict[str, np.ndarray]],
    held: HeldOutRows,
    resamples: int,
    seed: int,
    cache: dict,
) -> dict:
    """Everything the report shows, as plain numbers (JSON-able). `cache` keeps bootstrap draws between calls:
    a comparison's table is rewritten after every run and each run's draws are computed once."""
    base = _aligned(scores, held)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    seeds = {v: [r["seed"] for r in rows if r["variant"] == v] for v in variants}
    context = {"base": base, "held": held, "scores": scores, "seeds": seeds}
    context.update(cache=cache, resamples=resamples, seed=seed)
    refs = references(rows)
    every_pair: list[tuple[str, str, str]] = []
    for role, ref in refs:  # each variant against each reference, a mirror of a pair already there left out
        shown = {frozenset(p[:2]) for p in every_pair}
        every_pair += [(v, ref, role) for v in variants if v != ref and frozenset((v, ref)) not in shown]
    category_pairs = [(v, ref, ref) for v, ref in CATEGORY_PAIRS if v in variants and ref in variants]
    slices: dict[str, dict] = {}

    def make(name: str, mask: np.ndarray) -> _Slice:
        return _Slice(name, np.flatnonzero(mask), context)

    slices[ALL] = _slice_result(make(ALL, np.ones(len(held.label), bool)), variants, every_pair, True)
    slices[COLD] = _slice_result(make(COLD, base["cold"]), variants, every_pair, True)
    for category in sorted(set(base["category"].tolist())):
        part = make(CATEGORY + category, base["category"] == category)
        slices[CATEGORY + category] = _slice_result(part, variants, category_pairs, False)
    return {
        "variants": variants,
        "seeds": seeds,
        "test_days": held.days,
        "references": [{"role": role, "variant": ref} for role, ref in refs],
        "bootstrap": {"resamples": resamples, "seed": seed, "unit": "request", "n_requests": held.n_requests},
        "oracle": {"available": held.truth is not None, "source": held.truth_note},
        "slices": slices,
    }
