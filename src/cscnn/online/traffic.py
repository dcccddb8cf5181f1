"""Simulated users: one day's requests, the ranker's answer, and clicks with the world's true probability.

A day of traffic is drawn as the generator draws its logged days (users by activity, device by the world's
shares, candidates from the catalogue on sale that day with the day's new ads getting their share), but the
page is the ranker's: the top `top_k` of its order are shown at slots 1..top_k and each shown ad is clicked
with the true probability at its slot (position effect included). What was shown and clicked is a day of
impressions in the data contract, so the daily loop can train on the service's own traffic.

A ranker is anything with `rank(requests, rows) -> list[RankAnswer]` (`cscnn.online.arms`): the real service
over HTTP, or the oracle / random baselines in process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from cscnn.data import schema
from cscnn.data.synth.simulate import _exposure_weights, _sample_candidates  # the generator's own draw
from cscnn.errors import CSCNNError
from cscnn.online.click_model import DEVICE_NAMES, DEVICE_SHARES, WorldTruth


@dataclass(frozen=True)
class Requests:
    """One day's requests: who asks, from which device, when, and which ads are candidates."""

    day: str
    request_id: np.ndarray  # [R] str
    user: np.ndarray  # [R] population rows
    device: np.ndarray  # [R] indices into DEVICE_NAMES
    ts: pd.DatetimeIndex  # [R] UTC
    candidates: np.ndarray  # [R, C] catalogue rows

    def __len__(self) -> int:
        return len(self.request_id)


@dataclass
class RankAnswer:
    """The ranker's order of one request's candidates (catalogue rows, best first), or why it has none."""

    order: np.ndarray | None
    version: str = ""
    error: str = ""
    latency_ms: float = float("nan")


class Ranker(Protocol):
    name: str

    def rank(self, requests: Requests, rows: np.ndarray) -> list[RankAnswer]: ...


def draw_requests(
    truth: WorldTruth, day: str, n_requests: int, n_candidates: int, rng: np.random.Generator, prefix: str = "s"
) -> Requests:
    """`n_requests` requests of `day`, each with `n_candidates` distinct ads on sale that day."""
    index = truth.day_index(day)
    available = truth.available(index)
    if n_requests < 1:
        raise CSCNNError(f"requests must be >= 1, got {n_requests}")
    if not 1 <= n_candidates <= len(available):
        raise CSCNNError(f"candidates must be in 1..{len(available)} (ads on sale on {day}), got {n_candidates}")
    weights = _exposure_weights(truth.catalogue.first_day, index)
    candidates = available[_sample_candidates(weights, n_requests, n_candidates, rng)]
    user = rng.choice(len(truth.user_ids), n_requests, p=truth.population.activity)
    device = rng.choice(len(DEVICE_NAMES), n_requests, p=DEVICE_SHARES)
    second = np.sort(rng.integers(0, 86_400, n_requests))
    ts = pd.DatetimeIndex(pd.Timestamp(day, tz="UTC") + pd.to_timedelta(second, unit="s"))
    ids = np.asarray([f"{prefix}{index:03d}-{r:07d}" for r in range(n_requests)], dtype=object)
    return Requests(day, ids, user, device, ts, candidates)


@dataclass
class ServedDay:
    """What was shown and clicked (contract impressions) and one row per request (arm, version, outcome)."""

    impressions: pd.DataFrame
    requests: pd.DataFrame
    probability: np.ndarray  # true click probability of every impression row, same order
    extra: dict = field(default_factory=dict)


def show_and_click(
    truth: WorldTruth,
    requests: Requests,
    arm_of_request: np.ndarray,
    answers: Sequence[RankAnswer],
    top_k: int,
    rng: np.random.Generator,
) -> ServedDay:
    """Show each answered request's top `top_k` at slots 1..top_k and draw its clicks; a request without an
    answer (a service error) is kept in the request table as failed and shows nothing."""
    frames, probabilities, rows = [], [], []
    for r, answer in enumerate(answers):
        shown = answer.order[:top_k] if answer.order is not None else np.empty(0, dtype=np.intp)
        k = len(shown)
        position = np.arange(1, k + 1)
        p = truth.probability(np.full(k, requests.user[r]), shown, position, np.full(k, requests.device[r]))
        click = (rng.random(k) < p).astype(np.int64)
        rows.append(
            {
                "request_id": requests.request_id[r],
                "user_id": truth.user_ids[requests.user[r]],
                "arm": arm_of_request[r],
                "version": answer.version,
                "ok": answer.order is not None,
                "error": answer.error,
                "latency_ms": answer.latency_ms,
                "impressions": k,
                "clicks": int(click.sum()),
                "expected_clicks": float(p.sum()),
            }
        )
        if k:
            frames.append((r, shown, position, click))
            probabilities.append(p)
    if frames:
        r_index = np.concatenate([np.full(len(f[1]), f[0]) for f in frames])
        impressions = pd.DataFrame(
            {
                "ts": requests.ts[r_index],
                "request_id": requests.request_id[r_index],
                "user_id": truth.user_ids[requests.user[r_index]],
                "item_id": truth.item_ids[np.concatenate([f[1] for f in frames])],
                "position": np.concatenate([f[2] for f in frames]).astype(np.int64),
                "device": DEVICE_NAMES[requests.device[r_index]],
                "click": np.concatenate([f[3] for f in frames]),
            }
        )
    else:
        impressions = pd.DataFrame({c.name: pd.Series(dtype=object) for c in schema.IMPRESSIONS.columns})
    probability = np.concatenate(probabilities) if probabilities else np.empty(0)
    return ServedDay(impressions, pd.DataFrame(rows), probability)


def counterfactual_expected_clicks(truth: WorldTruth, requests: Requests, order: np.ndarray, top_k: int) -> np.ndarray:
    """Expected clicks of every request had its candidates been shown in `order` ([R, C] column indices into
    `requests.candidates`, best first): the oracle's and random ranking's value on the same requests."""
    shown = np.take_along_axis(requests.candidates, order[:, :top_k], axis=1)
    k = shown.shape[1]
    position = np.broadcast_to(np.arange(1, k + 1), shown.shape)
    p = truth.probability(requests.user[:, None], shown, position, requests.device[:, None])
    return p.sum(axis=1)


def oracle_order(truth: WorldTruth, requests: Requests) -> np.ndarray:
    """Candidates by true probability at slot 1 (the position effect is the same for every ad), best first."""
    p = truth.probability(requests.user[:, None], requests.candidates, 1, requests.device[:, None])
    return np.argsort(-p, axis=1, kind="stable")


def random_order(requests: Requests, rng: np.random.Generator) -> np.ndarray:
    return np.argsort(rng.random(requests.candidates.shape), axis=1)
