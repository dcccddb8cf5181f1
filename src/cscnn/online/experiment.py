"""An online experiment on simulated users: a stable per-user split over arms, one day of traffic through each
arm's ranker, and the report (per-arm counts, CTR@K, expected clicks, lift with user-level bootstrap intervals,
the oracle ceiling and the random floor on the same requests, cumulative lift over traffic).

Assignment is by user (as production experiments do, so one user always sees one arm): a user's arm is fixed
by a SHA-256 hash of (salt, user id), so it is the same on every day and in every process. The unit of the
intervals is therefore the user: users are resampled, not requests.

Two measures per arm: realised clicks (what a live test sees) and expected clicks, the sum of the true click
probabilities of what was shown (the same comparison without the Bernoulli noise of the clicks: far tighter).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.config import OnlineConfig
from cscnn.errors import CSCNNError
from cscnn.online.click_model import WorldTruth
from cscnn.online.traffic import (
    RankAnswer,
    ServedDay,
    counterfactual_expected_clicks,
    draw_requests,
    oracle_order,
    random_order,
    show_and_click,
)


def assign(user_ids: np.ndarray, arms: list[str], shares: list[float], salt: str) -> np.ndarray:
    """The arm of each user: stable (a hash of salt and id, not a random draw) and near `shares`."""
    if len(arms) != len(shares) or not arms:
        raise CSCNNError(f"{len(arms)} arms but {len(shares)} shares")
    weights = np.asarray(shares, dtype=float)
    if (weights <= 0).any():
        raise CSCNNError(f"arm shares must be > 0, got {shares}")
    bounds = np.cumsum(weights / weights.sum())
    unique, inverse = np.unique(np.asarray(user_ids, dtype=object).astype(str), return_inverse=True)
    position = np.fromiter((_unit(salt, uid) for uid in unique), float, len(unique))
    chosen = np.minimum(np.searchsorted(bounds, position, side="right"), len(arms) - 1)
    return np.asarray(arms, dtype=object)[chosen][inverse]


def _unit(salt: str, user_id: str) -> float:
    digest = hashlib.sha256(f"{salt}\0{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class Experiment:
    day: str
    arms: list[str]
    served: ServedDay
    oracle_expected: np.ndarray  # [R] expected clicks had the oracle ranked each request
    random_expected: np.ndarray  # [R] same, random order
    versions: dict[str, list[str]] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each arm's requests


def run_day(
    truth: WorldTruth,
    day: str,
    rankers: dict,
    shares: list[float],
    cfg: OnlineConfig,
    seed: int | None = None,
) -> Experiment:
    """One day of traffic split over `rankers` (first = control), clicks drawn, the report's table built."""
    if cfg.requests > cfg.max_requests:
        raise CSCNNError(f"{cfg.requests} requests exceeds online.max_requests={cfg.max_requests}")
    seed = cfg.seed if seed is None else seed
    rng = np.random.default_rng([seed, truth.day_index(day)])
    requests = draw_requests(truth, day, cfg.requests, cfg.candidates, rng)
    arms = list(rankers)
    arm_of_request = assign(truth.user_ids[requests.user], arms, shares, cfg.salt)
    answers: list[RankAnswer | None] = [None] * len(requests)
    seconds = {}
    for name, ranker in rankers.items():
        rows = np.flatnonzero(arm_of_request == name)
        started = time.perf_counter()
        if len(rows):
            for r, answer in zip(rows, ranker.rank(requests, rows), strict=True):
                answers[r] = answer
        seconds[name] = time.perf_counter() - started
    served = show_and_click(truth, requests, arm_of_request, answers, cfg.top_k, rng)
    oracle = counterfactual_expected_clicks(truth, requests, oracle_order(truth, requests), cfg.top_k)
    floor = counterfactual_expected_clicks(truth, requests, random_order(requests, rng), cfg.top_k)
    versions = {
        name: sorted({v for v in served.requests.loc[served.requests["arm"] == name, "version"] if v}) for name in arms
    }
    experiment = Experiment(day, arms, served, oracle, floor, versions, seconds=seconds)
    experiment.table = summarise(experiment, cfg.bootstrap, seed)
    return experiment


def summarise(experiment: Experiment, resamples: int, seed: int = 0) -> pd.DataFrame:
    """One row per arm: counts, CTR@K, clicks and expected clicks per request, the same requests' oracle and
    random values, and the lift over the control (first) arm with 95 % user-bootstrap intervals."""
    req = experiment.served.requests.assign(oracle=experiment.oracle_expected, floor=experiment.random_expected)
    req["adjusted"] = cuped(req["expected_clicks"].to_numpy(), req["oracle"].to_numpy())
    rng = np.random.default_rng(seed)
    per_user = {
        arm: req[req["arm"] == arm].groupby("user_id")[list(MEASURES)].agg(["sum", "count"]) for arm in experiment.arms
    }
    draws = {arm: _user_draws(per_user[arm], resamples, rng) for arm in experiment.arms}
    control = experiment.arms[0]
    rows = []
    for arm in experiment.arms:
        mine = req[req["arm"] == arm]
        n = len(mine)
        row = {
            "arm": arm,
            "versions": ",".join(experiment.versions.get(arm, [])),
            "users": int(mine["user_id"].nunique()),
            "requests": n,
            "failed_requests": int((~mine["ok"]).sum()),
            "impressions": int(mine["impressions"].sum()),
            "clicks": int(mine["clicks"].sum()),
            "ctr_at_k": mine["clicks"].sum() / max(1, mine["impressions"].sum()),
            "clicks_per_request": mine["clicks"].mean() if n else float("nan"),
            "expected_per_request": mine["expected_clicks"].mean() if n else float("nan"),
            "oracle_per_request": mine["oracle"].mean() if n else float("nan"),
            "random_per_request": mine["floor"].mean() if n else float("nan"),
        }
        for measure in MEASURES:
            lift, low, high = _lift(per_user[arm], per_user[control], draws[arm], draws[control], measure)
            row[f"{measure}_lift"], row[f"{measure}_lift_low"], row[f"{measure}_lift_high"] = lift, low, high
        rows.append(row)
    return pd.DataFrame(rows)


MEASURES = ("clicks", "expected_clicks", "adjusted")


def cuped(value: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """`value` minus its linear prediction from a covariate fixed before the arm acts (Deng et al., WSDM 2013).

    The covariate is what the oracle would have earned on the same request: it carries how promising the user
    and the candidates are, which the arm cannot change, so removing it leaves the mean unchanged in
    expectation and takes most of the between-user variance out of the comparison."""
    centred = covariate - covariate.mean()
    spread = float(np.dot(centred, centred))
    theta = float(np.dot(centred, value - value.mean())) / spread if spread > 0 else 0.0
    return value - theta * centred


def _user_draws(per_user: pd.DataFrame, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[resamples, n_users] bootstrap indices of this arm's users."""
    n = len(per_user)
    return rng.integers(0, n, (resamples, n)) if n else np.zeros((resamples, 0), dtype=np.int64)


def _lift(
    arm: pd.DataFrame, control: pd.DataFrame, arm_draws: np.ndarray, control_draws: np.ndarray, measure: str
) -> tuple[float, float, float]:
    """Relative lift of per-request means (arm / control - 1) and its 95 % percentile interval over users."""
    if not len(arm) or not len(control):
        return float("nan"), float("nan"), float("nan")

    def ratio(frame: pd.DataFrame, draws: np.ndarray | None):
        total, count = frame[(measure, "sum")].to_numpy(), frame[(measure, "count")].to_numpy()
        if draws is None:
            return total.sum() / count.sum()
        return total[draws].sum(axis=1) / count[draws].sum(axis=1)

    point = ratio(arm, None) / ratio(control, None) - 1.0
    spread = ratio(arm, arm_draws) / ratio(control, control_draws) - 1.0
    low, high = np.percentile(spread, [2.5, 97.5])
    return float(point), float(low), float(high)


# --- the report -------------------------------------------------------------------------------------------------


def verdict(low: float, high: float) -> str:
    if np.isnan(low) or np.isnan(high):
        return "-"
    return "ahead" if low > 0 else "behind" if high < 0 else "not distinguishable"


def markdown(experiment: Experiment, title: str = "") -> str:
    t = experiment.table
    control = experiment.arms[0]
    lines = [
        f"### {title or 'Experiment'}: {experiment.day}, control `{control}`",
        "",
        "| arm | versions | users | requests | failed | impressions | clicks | CTR@K | clicks / request "
        "| expected clicks / request | lift in clicks (95% CI) | lift in expected clicks (95% CI) "
        "| lift in expected clicks, request-adjusted (95% CI) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in t.iterrows():
        is_control = r["arm"] == control
        lift_c = "control" if is_control else _pct(r["clicks_lift"], r["clicks_lift_low"], r["clicks_lift_high"])
        lift_e = (
            "control"
            if is_control
            else _pct(r["expected_clicks_lift"], r["expected_clicks_lift_low"], r["expected_clicks_lift_high"])
        )
        lift_a = "control" if is_control else _pct(r["adjusted_lift"], r["adjusted_lift_low"], r["adjusted_lift_high"])
        judged = "" if is_control else verdict(r["adjusted_lift_low"], r["adjusted_lift_high"])
        lines.append(
            f"| {r['arm']} | {r['versions'] or '-'} | {r['users']} | {r['requests']} | {r['failed_requests']} | "
            f"{r['impressions']} | {r['clicks']} | {r['ctr_at_k']:.4f} | {r['clicks_per_request']:.4f} | "
            f"{r['expected_per_request']:.4f} | {lift_c} | {lift_e} | {lift_a} | {judged} |"
        )
    req = experiment.served.requests
    oracle, floor = experiment.oracle_expected.mean(), experiment.random_expected.mean()
    lines += [
        "",
        f"Same {len(req)} requests, ranked offline by the world's true probability (oracle, the ceiling): "
        f"{oracle:.4f} expected clicks per request; in random order (the floor): {floor:.4f}. "
        "Arms are assigned per user, so the intervals resample users. The request-adjusted lift removes what "
        "the oracle would have earned on each request (CUPED): the same comparison with the between-user "
        "variance taken out; the verdict uses it.",
    ]
    for _, r in t.iterrows():
        gap = (r["expected_per_request"] - r["random_per_request"]) / max(
            1e-12, r["oracle_per_request"] - r["random_per_request"]
        )
        lines.append(f"- `{r['arm']}` closes {gap:.1%} of the gap from random to oracle on its own requests.")
    return "\n".join(lines) + "\n"


def _pct(point: float, low: float, high: float) -> str:
    if np.isnan(point):
        return "-"
    return f"{point:+.1%} [{low:+.1%}, {high:+.1%}]"


def cumulative_lift_png(experiment: Experiment, out: Path) -> Path:
    """Lift of each arm's cumulative expected (solid) and realised (dotted) clicks per request over the control's,
    as the day's traffic accumulates."""
    from cscnn.training.plots import pyplot, save_figure

    plt = pyplot()
    req = experiment.served.requests
    control = experiment.arms[0]
    order = np.arange(len(req))
    fig, ax = plt.subplots(figsize=(7, 4))
    base = req["arm"].to_numpy() == control

    def cumulative(mask: np.ndarray, column: str) -> np.ndarray:
        values = np.where(mask, req[column].to_numpy(), 0.0)
        return np.cumsum(values) / np.maximum(1, np.cumsum(mask))

    for arm in experiment.arms[1:]:
        mine = req["arm"].to_numpy() == arm
        for column, style in (("expected_clicks", "-"), ("clicks", ":")):
            with np.errstate(divide="ignore", invalid="ignore"):
                lift = cumulative(mine, column) / cumulative(base, column) - 1.0
            ax.plot(order + 1, 100 * lift, style, label=f"{arm} vs {control} ({column.replace('_', ' ')})")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("requests so far (all arms)")
    ax.set_ylabel("lift over control, %")
    ax.set_title(f"Cumulative lift, {experiment.day}")
    if len(experiment.arms) > 1:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "one arm: nothing to compare", transform=ax.transAxes, ha="center")
    return save_figure(fig, plt, out)
