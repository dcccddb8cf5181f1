"""The impression log: requests, candidate pages, clicks from the known logistic model, one file per day, and
next to it (truth/probability/<day>.parquet) each row's true click probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cscnn.config import WorldConfig
from cscnn.data import schema
from cscnn.data.io import write_table
from cscnn.data.synth.params import (
    DEVICE_EFFECT,
    DEVICE_P,
    DEVICES,
    NEW_ITEM_SHARE,
    PROBABILITY_DIR,
    TRUTH_DIR,
    Catalogue,
    Population,
)


def write_days(
    cfg: WorldConfig, population: Population, catalogue: Catalogue, root: Path, rng: np.random.Generator
) -> tuple[list[dict], float]:
    """Write impressions/<day>.parquet and truth/probability/<day>.parquet (the true click probability of each
    row, same order) for every day; return per-day statistics and the oracle AUC over all days."""
    shown_before = np.zeros(len(catalogue.items), dtype=bool)
    item_row = pd.Series(np.arange(len(catalogue.items)), index=catalogue.items["item_id"])
    probability_dir = root / TRUTH_DIR / PROBABILITY_DIR
    probability_dir.mkdir(parents=True, exist_ok=True)
    stats, clicks, probabilities = [], [], []
    for day in range(cfg.n_days):
        frame, probability, without_visual = _simulate_day(cfg, day, population, catalogue, rng)
        name = frame["ts"].iloc[0].strftime("%Y-%m-%d")
        write_table(frame, schema.impressions_path(root, name), schema.IMPRESSIONS)
        truth = pd.DataFrame({"probability": probability.astype(np.float64)})
        truth.to_parquet(probability_dir / f"{name}.parquet", index=False)
        rows = item_row[frame["item_id"]].to_numpy()
        cold = ~shown_before[rows]
        oracle = _oracle(frame, probability, without_visual, cold)
        stats.append(_day_stats(name, frame, rows, cold, catalogue, day) | oracle)
        shown_before[rows] = True
        clicks.append(frame["click"].to_numpy())
        probabilities.append(probability)
    return stats, _auc(np.concatenate(clicks), np.concatenate(probabilities))


def _day_stats(
    name: str, frame: pd.DataFrame, rows: np.ndarray, cold: np.ndarray, catalogue: Catalogue, day: int
) -> dict:
    return {
        "day": name,
        "rows": len(frame),
        "requests": int(frame["request_id"].nunique()),
        "clicks": int(frame["click"].sum()),
        "ctr": float(frame["click"].mean()),
        "items_available": int((catalogue.first_day <= day).sum()),
        "new_items": int((catalogue.first_day == day).sum()),
        "cold_rows": int(cold.sum()),
        "cold_items_shown": len(np.unique(rows[cold])),
    }


def _oracle(frame: pd.DataFrame, probability: np.ndarray, without_visual: np.ndarray, cold: np.ndarray) -> dict:
    """AUC of the true probability on all rows and on cold rows (items never shown before this day), and on
    cold rows without the visual term: the gap is what reading the images can add for unseen items."""
    click = frame["click"].to_numpy()
    return {
        "oracle_auc": _auc(click, probability),
        "oracle_auc_cold": _auc(click[cold], probability[cold]),
        "oracle_auc_cold_without_visual": _auc(click[cold], without_visual[cold]),
    }


def _auc(click: np.ndarray, probability: np.ndarray) -> float | None:
    """AUC of the true probability; None where the rows hold only one class."""
    return float(roc_auc_score(click, probability)) if len(np.unique(click)) == 2 else None


def break_day(path: Path, rng: np.random.Generator) -> None:
    """Damage a written day the way a broken export would (bypassing the contract on purpose).

    The labels of 1 % of the rows become 2 and 0.5 % of the rows are appended again at the end; the day's
    truth/probability file keeps describing the rows as generated (its rows are the first rows of the broken file).
    """
    frame = pd.read_parquet(path)
    bad_labels = rng.choice(len(frame), size=max(1, len(frame) // 100), replace=False)
    frame.loc[bad_labels, "click"] = 2
    duplicates = frame.sample(n=max(1, len(frame) // 200), random_state=0)
    pd.concat([frame, duplicates], ignore_index=True).to_parquet(path, index=False)


def _simulate_day(
    cfg: WorldConfig, day: int, population: Population, catalogue: Catalogue, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One day's impressions (contract columns), the true click probability of each row and
    its logit without the visual term."""
    k = cfg.candidates_per_request
    n_requests = max(1, round(cfg.impressions_per_day / k))
    available = np.flatnonzero(catalogue.first_day <= day)
    item = available[_sample_candidates(_exposure_weights(catalogue.first_day, day), n_requests, k, rng)]
    user = rng.choice(cfg.n_users, n_requests, p=population.activity)
    device = rng.choice(len(DEVICES), n_requests, p=DEVICE_P)
    second = np.sort(rng.integers(0, 86_400, n_requests))
    position = np.broadcast_to(np.arange(1, k + 1), item.shape)
    user_rows, device_rows = np.repeat(user, k), np.repeat(device, k)
    item_rows = item.ravel()
    logit = (
        cfg.base_logit
        + cfg.affinity_weight * population.affinity[user_rows, catalogue.category_index[item_rows]]
        + cfg.visual_weight * catalogue.visual[item_rows]
        - cfg.position_weight * (position.ravel() - 1)
        + np.asarray(DEVICE_EFFECT)[device_rows]
        + catalogue.item_effect[item_rows]
    )
    probability = 1.0 / (1.0 + np.exp(-logit))
    without_visual = logit - cfg.visual_weight * catalogue.visual[item_rows]
    click = (rng.random(len(probability)) < probability).astype(np.int64)
    day_start = pd.Timestamp(cfg.start_day, tz="UTC") + pd.Timedelta(days=day)
    request_id = np.asarray([f"r{day:03d}-{r:07d}" for r in range(n_requests)], dtype=object)
    frame = pd.DataFrame(
        {
            "ts": day_start + pd.to_timedelta(np.repeat(second, k), unit="s"),
            "request_id": np.repeat(request_id, k),
            "user_id": population.users["user_id"].to_numpy()[user_rows],
            "item_id": catalogue.items["item_id"].to_numpy()[item_rows],
            "position": position.ravel().astype(np.int64),
            "device": np.asarray(DEVICES, dtype=object)[device_rows],
            "click": click,
        }
    )
    return frame, probability, without_visual


def _sample_candidates(weights: np.ndarray, n_requests: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """[n_requests, k] distinct item indices per request, drawn by `weights`.

    Draw with replacement, redraw the repeats until none is left (cheap: k is far below the catalogue size),
    then shuffle the slots so that the position an item gets does not depend on its sampling weight.
    """
    probability = weights / weights.sum()
    draws = rng.choice(len(weights), (n_requests, k), p=probability)
    repeated = repeated_in_row(draws)
    while repeated.any():
        draws[repeated] = rng.choice(len(weights), int(repeated.sum()), p=probability)
        repeated = repeated_in_row(draws)
    shuffle = np.argsort(rng.random(draws.shape), axis=1)
    return np.take_along_axis(draws, shuffle, axis=1)


def repeated_in_row(values: np.ndarray) -> np.ndarray:
    """True where a value already occurred earlier in the same row (used to redraw repeats in a request)."""
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    repeat_in_order = np.zeros(values.shape, dtype=bool)
    repeat_in_order[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeated = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(repeated, order, repeat_in_order, axis=1)
    return repeated


def _exposure_weights(first_day: np.ndarray, day: int) -> np.ndarray:
    """Sampling weights over the items available on `day`: new items get NEW_ITEM_SHARE of the draws."""
    available = first_day[first_day <= day]
    weights = np.ones(len(available))
    is_new = available == day
    n_new, n_old = int(is_new.sum()), int((~is_new).sum())
    if n_new and n_old:
        weights[is_new] = NEW_ITEM_SHARE / (1.0 - NEW_ITEM_SHARE) * n_old / n_new
    return weights
