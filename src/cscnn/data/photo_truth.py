"""The oracle of a photo world after `import-amazon`: the true click probability of every imported impression.

`import-amazon` turns each review into a request: the reviewed item (click 1) plus up to `neg_ratio` items drawn
uniformly from the items on the market at that time (first reviewed then or earlier). For a row of such a
request with user u, item i, day d::

    pi          = P(u picks i | u reviews on day d) = exp(utility[u, i] - log_partition[u, d])   (the generator's)
    probability = pi / (pi + r / A)

where r is the number of negatives in the request and A the number of items on the market at its time. That
is P(click = 1 | user, item, day) under the generator and the import's sampling: the positive is drawn from
pi, each negative uniformly from A items. It ignores one thing the importer does (negatives never include
items the user reviews at any time), so it uses no knowledge of the future. AUC(probability, click) on the
world's rows is the oracle's AUC; mean(probability) is close to the click rate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cscnn.data import schema
from cscnn.data.amazon import import_amazon
from cscnn.data.photo_world import (
    IMAGES_DIR,
    MARKER,
    META_FILE,
    REVIEWS_FILE,
    TRUTH_DIR,
    TRUTH_ITEMS,
    TRUTH_USERS,
    PhotoWorldConfig,
    affinity_matrix,
    generate_photo_world,
)
from cscnn.data.photos import STATISTICS
from cscnn.data.truth import write_attributes
from cscnn.errors import ConfigError, DataContractError
from cscnn.files import atomic_dir

PROBABILITY_DIR = "probability"  # <world>/truth/probability/<day>.parquet, one column `probability`


def probability_path(world: Path, day: str) -> Path:
    return Path(world) / TRUTH_DIR / PROBABILITY_DIR / f"{day}.parquet"


def photo_amazon(
    cfg: PhotoWorldConfig, raw: Path, import_to: Path | None = None, neg_ratio: int = 4, force: bool = False
) -> dict:
    """Generate the raw files in `raw`; with `import_to`, import them there with `import_amazon` and write
    the oracle probabilities next to the impressions. Returns the generator's, the import's and the oracle's
    summaries."""
    if import_to is not None:
        _check_import_options(neg_ratio, import_to, force)
    started = time.perf_counter()
    summary = {"raw": str(raw), "generated": generate_photo_world(cfg, raw, force=force)["counts"]}
    summary["generate_seconds"] = round(time.perf_counter() - started, 1)
    if import_to is not None:
        report = import_amazon(
            Path(raw) / REVIEWS_FILE,
            Path(raw) / META_FILE,
            Path(raw) / IMAGES_DIR,
            Path(import_to),
            neg_ratio=neg_ratio,
            seed=cfg.seed,
            force=force,
        )
        summary["world"] = str(import_to)
        summary["imported"] = report["counts"]
        summary["oracle"] = write_photo_truth(raw, import_to)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def _check_import_options(neg_ratio: int, world: Path, force: bool) -> None:
    """The checks import_amazon makes, made before anything is generated."""
    if isinstance(neg_ratio, bool) or not isinstance(neg_ratio, int) or neg_ratio < 1:
        raise ConfigError(f"neg_ratio must be an integer >= 1, got {neg_ratio!r}")
    if Path(world).exists() and any(Path(world).iterdir()) and not force:
        raise ConfigError(f"{world}: folder exists and is not empty; pass --force to replace it")


def write_photo_truth(raw: Path, world: Path) -> dict:
    """Write `<world>/truth/probability/<day>.parquet` (float64 `probability`, one row per row of that day's
    impressions file, same order) for a world imported from the photo world in `raw`; return the oracle's
    click rate, mean probability and AUC overall and on the last day's cold-start items."""
    raw, world = Path(raw), Path(world)
    days = _impression_days(world)
    frames = [pd.read_parquet(schema.impressions_path(world, day)) for day in days]
    impressions = pd.concat(frames, ignore_index=True)
    probability = impression_probability(raw, impressions)
    with atomic_dir(world / TRUTH_DIR / PROBABILITY_DIR) as tmp:
        offset = 0
        for day, frame in zip(days, frames, strict=True):
            values = probability[offset : offset + len(frame)]
            pd.DataFrame({"probability": values.astype(np.float64)}).to_parquet(tmp / f"{day}.parquet", index=False)
            offset += len(frame)
    _write_item_attributes(raw, world)
    return oracle_summary(impressions, probability, days)


def _write_item_attributes(raw: Path, world: Path) -> None:
    """`truth/attributes.parquet` of the imported catalogue: every pixel statistic (each category's taste
    reads one of them) and the item's true visual term."""
    truth = pd.read_parquet(raw / TRUTH_DIR / TRUTH_ITEMS).set_index("asin")
    catalogue = pd.read_parquet(world / schema.ITEMS_FILE, columns=["item_id"])["item_id"]
    rows = truth.loc[catalogue.to_numpy()]
    write_attributes(world, catalogue.to_numpy(), rows[list(STATISTICS)], rows["visual"].to_numpy())


def _impression_days(world: Path) -> list[str]:
    folder = world / schema.IMPRESSIONS_DIR
    days = sorted(path.stem for path in folder.glob("*.parquet")) if folder.is_dir() else []
    if not days:
        raise DataContractError(f"{folder}: no impressions files; import the photo world there first")
    return days


def impression_probability(raw: Path, impressions: pd.DataFrame) -> np.ndarray:
    """The oracle probability (see the module docstring) of each row of `impressions` (all days, any order)."""
    marker = Path(raw) / MARKER
    if not marker.is_file():
        raise DataContractError(f"{raw}: no photo world here ({MARKER} missing); generate it first")
    start = pd.Timestamp(json.loads(marker.read_text())["days"][0], tz="UTC")
    items = pd.read_parquet(Path(raw) / TRUTH_DIR / TRUTH_ITEMS)
    users = pd.read_parquet(Path(raw) / TRUTH_DIR / TRUTH_USERS)
    user = _lookup(pd.Index(users["reviewer_id"]), impressions["user_id"], "user", raw)
    item = _lookup(pd.Index(items["asin"]), impressions["item_id"], "item", raw)
    ts = pd.to_datetime(impressions["ts"], utc=True)
    day = ((ts - start) // pd.Timedelta(days=1)).to_numpy()
    seconds = ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    partitions = users[[c for c in users.columns if c.startswith("log_partition_")]].to_numpy()
    if day.min() < 0 or day.max() >= partitions.shape[1]:
        raise DataContractError(f"impressions fall outside the photo world's days in {raw}")
    utility = affinity_matrix(users)[user, items["category"].to_numpy()[item]] + items["utility"].to_numpy()[item]
    log_pi = utility - partitions[user, day]
    negatives = impressions.groupby("request_id")["request_id"].transform("size").to_numpy() - 1
    clicked = impressions["click"].to_numpy() == 1
    by_item = pd.Series(seconds[clicked]).groupby(impressions["item_id"].to_numpy()[clicked])
    first_seen = np.sort(by_item.min().to_numpy())
    on_market = np.searchsorted(first_seen, seconds, side="right")  # items first reviewed by then (the importer's)
    with np.errstate(divide="ignore"):
        log_odds = log_pi + np.log(np.maximum(on_market, 1)) - np.log(negatives)
    return np.where(negatives > 0, 1.0 / (1.0 + np.exp(-log_odds)), 1.0)


def _lookup(index: pd.Index, values: pd.Series, what: str, raw: Path) -> np.ndarray:
    positions = index.get_indexer(values)
    if (positions < 0).any():
        unknown = values[positions < 0].iloc[0]
        raise DataContractError(f"{what} {unknown!r} of the impressions is not in the photo world in {raw}")
    return positions


def oracle_summary(impressions: pd.DataFrame, probability: np.ndarray, days: list[str]) -> dict:
    """Click rate, mean oracle probability, oracle AUC overall, on the last day and on its cold-start rows
    (items that appear on no earlier day)."""
    click = impressions["click"].to_numpy()
    day = pd.to_datetime(impressions["ts"], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    last = day == days[-1]
    seen_before = set(impressions.loc[~last, "item_id"])
    cold = last & ~impressions["item_id"].isin(seen_before).to_numpy()
    return {
        "rows": len(click),
        "rows_per_day": {d: int((day == d).sum()) for d in days},
        "ctr": round(float(click.mean()), 4),
        "mean_probability": round(float(probability.mean()), 4),
        "auc": _auc(click, probability),
        "last_day_auc": _auc(click[last], probability[last]),
        "cold_start_rows": int(cold.sum()),
        "cold_start_auc": _auc(click[cold], probability[cold]),
    }


def _auc(click: np.ndarray, score: np.ndarray) -> float | None:
    return round(float(roc_auc_score(click, score)), 4) if 0 < click.sum() < len(click) else None
