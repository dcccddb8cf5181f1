"""Import McAuley's Amazon review data (2014 or 2018 release) into a world folder.

A review is the only signal the data has, so it becomes a clicked impression; the user's unclicked
impressions are sampled from items they never reviewed and share the review's request and time.
Items that cannot be imported (no metadata, no readable image) are never dropped silently: the import
either fails naming them or, with `missing_image="skip"`, drops them and lists them in the report.
Reading and parsing the source files lives in `cscnn.data.amazon_format`.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cscnn.data import schema
from cscnn.data.amazon_format import UNKNOWN, Catalogue, read_meta, read_reviews
from cscnn.data.io import write_table
from cscnn.data.synth import repeated_in_row
from cscnn.errors import ConfigError, DataContractError
from cscnn.files import atomic_dir, write_json

MISSING_IMAGE_POLICIES = ("fail", "skip")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
REPORT_FILE = "import_report.json"
DEVICE = "unknown"
NOT_IN_META = "not in metadata"
NO_IMAGE = "no image file"
BAD_IMAGE = "unreadable image"
LISTED_IN_ERRORS = 5
REJECTION_ROUNDS = 50  # then the few rows still unfilled are sampled exactly


def import_amazon(
    reviews: Path,
    meta: Path,
    images_dir: Path,
    out: Path,
    neg_ratio: int = 4,
    seed: int = 0,
    category_level: int = -1,
    missing_image: str = "fail",
    force: bool = False,
) -> dict:
    """Write the world for an Amazon reviews + metadata + local images triple to `out`; return the report.

    Everything is read and checked before `out` is touched, and the world is written through `atomic_dir`,
    so a failure leaves no folder behind. An existing non-empty `out` is replaced only with `force`.
    """
    _check_options(neg_ratio, missing_image)
    if Path(out).exists() and any(Path(out).iterdir()) and not force:
        raise ConfigError(f"{out}: folder exists and is not empty; pass force=True (CLI: --force) to replace it")
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataContractError(f"{images_dir}: images folder not found")
    all_reviews = read_reviews(Path(reviews))
    catalogue = read_meta(Path(meta), category_level)
    unique_reviews = all_reviews.drop_duplicates(["user_id", "item_id"], keep="first")
    problems, image_files = _check_items(unique_reviews["item_id"].unique(), catalogue, images_dir)
    skipped = _apply_policy(problems, unique_reviews, missing_image, images_dir)
    kept = unique_reviews[~unique_reviews["item_id"].isin(problems)]
    if kept.empty:
        raise DataContractError(f"{reviews}: no reviews left to import after skipping {len(problems)} item(s)")
    items = _items_table(catalogue, sorted(kept["item_id"].unique()), image_files)
    impressions, short = _impressions(kept, items["item_id"].to_numpy(), neg_ratio, np.random.default_rng(seed))
    users = pd.DataFrame({"user_id": sorted(kept["user_id"].unique()), "age_group": UNKNOWN, "gender": UNKNOWN})
    days = impressions["ts"].dt.strftime("%Y-%m-%d")
    report = {
        "source": {"reviews": str(reviews), "meta": str(meta), "images_dir": str(images_dir)},
        "options": {
            "neg_ratio": neg_ratio,
            "seed": seed,
            "category_level": category_level,
            "missing_image": missing_image,
        },
        **_outcome(all_reviews, unique_reviews, problems, skipped, catalogue, items, users, impressions, short),
    }
    with atomic_dir(Path(out)) as tmp:
        _copy_images(items, image_files, tmp / schema.IMAGES_DIR)
        write_table(items, tmp / schema.ITEMS_FILE, schema.ITEMS)
        write_table(users, tmp / schema.USERS_FILE, schema.USERS)
        for day, frame in impressions.groupby(days, sort=True):
            write_table(frame, schema.impressions_path(tmp, str(day)), schema.IMPRESSIONS)
        write_json(tmp / REPORT_FILE, report)
    return report


def _outcome(
    all_reviews: pd.DataFrame,
    unique_reviews: pd.DataFrame,
    problems: dict[str, str],
    skipped: list[dict],
    catalogue: Catalogue,
    items: pd.DataFrame,
    users: pd.DataFrame,
    impressions: pd.DataFrame,
    negatives_short: int,
) -> dict:
    """The counts and skips of the import report."""
    days = impressions["ts"].dt.strftime("%Y-%m-%d")
    return {
        "counts": {
            "reviews_read": len(all_reviews),
            "duplicate_reviews": len(all_reviews) - len(unique_reviews),
            "reviews_dropped": int(unique_reviews["item_id"].isin(problems).sum()),
            "positives": int(impressions["click"].sum()),
            "negatives": int((impressions["click"] == 0).sum()),
            "negatives_short": negatives_short,
            "impressions": len(impressions),
            "items": len(items),
            "users": len(users),
            "categories": int(items["category"].nunique()),
            "days": int(days.nunique()),
            "meta_records": catalogue.records,
            "meta_duplicates": catalogue.duplicates,
            "prices_unparsed": catalogue.prices_unparsed,
        },
        "first_day": days.min(),
        "last_day": days.max(),
        "skipped_items": skipped,
        "skipped_by_reason": dict(sorted(Counter(problems.values()).items())),
    }


def _check_options(neg_ratio: int, missing_image: str) -> None:
    if missing_image not in MISSING_IMAGE_POLICIES:
        raise ConfigError(f"missing_image must be one of {list(MISSING_IMAGE_POLICIES)}, got {missing_image!r}")
    if isinstance(neg_ratio, bool) or not isinstance(neg_ratio, int) or neg_ratio < 1:
        raise ConfigError(f"neg_ratio must be an integer >= 1, got {neg_ratio!r}")


def _find_image(images_dir: Path, asin: str) -> tuple[Path | None, str | None]:
    """(image file, None) or (None, reason)."""
    for extension in IMAGE_EXTENSIONS:
        candidate = images_dir / f"{asin}{extension}"
        if candidate.is_file():
            try:
                with Image.open(candidate) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                return None, BAD_IMAGE
            return candidate, None
    return None, NO_IMAGE


def _check_items(asins: np.ndarray, catalogue: Catalogue, images_dir: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """Reasons for the reviewed asins that cannot be imported, and the image file of the others."""
    problems: dict[str, str] = {}
    images: dict[str, Path] = {}
    for asin in sorted(asins):
        if asin not in catalogue.items.index:
            problems[asin] = NOT_IN_META
            continue
        found, reason = _find_image(images_dir, asin)
        if found is None:
            problems[asin] = reason or NO_IMAGE
        else:
            images[asin] = found
    return problems, images


def _apply_policy(problems: dict[str, str], reviews: pd.DataFrame, policy: str, images_dir: Path) -> list[dict]:
    """Raise under "fail"; under "skip" return the dropped items with their reason and review count."""
    if not problems:
        return []
    counts = reviews["item_id"].value_counts()
    if policy == "fail":
        first = ", ".join(f"{asin} ({reason})" for asin, reason in list(problems.items())[:LISTED_IN_ERRORS])
        by_reason = pd.Series(problems).value_counts().to_dict()
        raise DataContractError(
            f"{len(problems)} reviewed item(s) cannot be imported ({by_reason}; images looked up in {images_dir} "
            f"as <asin>{'|'.join(IMAGE_EXTENSIONS)}), first: {first}. Pass missing_image='skip' "
            "(CLI: --missing-image skip) to drop them and their reviews"
        )
    return [{"asin": asin, "reason": reason, "reviews": int(counts[asin])} for asin, reason in problems.items()]


def _items_table(catalogue: Catalogue, asins: list[str], image_files: dict[str, Path]) -> pd.DataFrame:
    meta = catalogue.items.loc[asins]
    return pd.DataFrame(
        {
            "item_id": asins,
            "category": meta["category"].to_numpy(),
            "image": [f"{asin}{image_files[asin].suffix.lower()}" for asin in asins],
            "brand": meta["brand"].to_numpy(),
            "price": meta["price"].to_numpy(dtype=float),
        }
    )


def _copy_images(items: pd.DataFrame, image_files: dict[str, Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for asin, name in zip(items["item_id"], items["image"], strict=True):
        shutil.copyfile(image_files[asin], folder / name)


def _impressions(
    reviews: pd.DataFrame, item_ids: np.ndarray, neg_ratio: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, int]:
    """One request per review: the reviewed item (click=1) plus up to `neg_ratio` sampled negatives.

    Negatives come only from items already on the market at the review's time (first reviewed then or
    earlier), so an item never appears in the log before it exists and items that first show up on a
    held-out day stay cold-start. Items the user reviews at any time are never drawn as negatives.
    Returns the impressions and how many negatives could not be drawn (users who reviewed almost every item).
    """
    positives = reviews.sort_values(["time", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    first_seen = positives.groupby("item_id")["time"].min().reindex(item_ids)
    launch = pd.DataFrame({"item_id": item_ids, "time": first_seen.to_numpy()}).sort_values(
        ["time", "item_id"], kind="stable"
    )
    item_ids = launch["item_id"].to_numpy(dtype=object)  # in launch order: available items are a prefix
    available = np.searchsorted(launch["time"].to_numpy(), positives["time"].to_numpy(), side="right")
    user_index = pd.Index(sorted(positives["user_id"].unique()))
    user = user_index.get_indexer(positives["user_id"])
    item = pd.Index(item_ids).get_indexer(positives["item_id"])
    negatives = sample_negatives(user, item, available, neg_ratio, rng)
    slots = np.column_stack([item, negatives])
    valid = slots >= 0
    keys = np.where(valid, rng.random(slots.shape), np.inf)
    position = np.argsort(np.argsort(keys, axis=1), axis=1) + 1
    width = max(8, len(str(len(positives))))
    request_id = np.asarray([f"r{i:0{width}d}" for i in range(len(positives))], dtype=object)
    row = np.broadcast_to(np.arange(len(positives))[:, None], slots.shape)[valid]
    impressions = pd.DataFrame(
        {
            "ts": pd.to_datetime(positives["time"].to_numpy()[row], unit="s", utc=True),
            "request_id": request_id[row],
            "user_id": positives["user_id"].to_numpy()[row],
            "item_id": item_ids[slots[valid]],
            "position": position[valid].astype(np.int64),
            "device": DEVICE,
            "click": np.broadcast_to(np.arange(slots.shape[1]) == 0, slots.shape)[valid].astype(np.int64),
        }
    )
    return impressions, int(len(positives) * neg_ratio - valid[:, 1:].sum())


def sample_negatives(
    user: np.ndarray, item: np.ndarray, available: np.ndarray, neg_ratio: int, rng: np.random.Generator
) -> np.ndarray:
    """[len(user), neg_ratio] item indices the user never reviewed, distinct per row; -1 where none is left.

    `user`/`item` are the (user, reviewed item) index pairs of the positives, one row each; row i draws from
    items `0 .. available[i] - 1` (the items on the market at that review's time).
    """
    n_items = int(available.max()) if len(available) else 0
    reviewed = np.unique(user.astype(np.int64) * n_items + item)
    per_user = np.bincount(reviewed // n_items, minlength=user.max() + 1)
    wanted = np.clip(np.minimum(neg_ratio, available - per_user[user]), 0, None)
    open_slot = np.arange(neg_ratio)[None, :] < wanted[:, None]
    placeholder = -1 - np.arange(neg_ratio)[None, :]  # distinct per column, never a real item

    def draw(rows: np.ndarray) -> np.ndarray:
        return (rng.random(rows.shape) * available[rows]).astype(np.int64)

    every_slot = np.broadcast_to(np.arange(len(user))[:, None], (len(user), neg_ratio))
    draws = np.where(open_slot, draw(every_slot), placeholder)

    def rejected(values: np.ndarray) -> np.ndarray:
        keys = user[:, None].astype(np.int64) * n_items + values
        return open_slot & (np.isin(keys, reviewed) | repeated_in_row(values))

    bad = rejected(draws)
    for _ in range(REJECTION_ROUNDS):
        if not bad.any():
            break
        draws[bad] = draw(every_slot[bad])
        bad = rejected(draws)
    for row in np.flatnonzero(bad.any(axis=1)):
        draws[row] = _exact_negatives(draws[row], bad[row], user, item, user[row], int(available[row]), rng)
    return np.where(open_slot, draws, -1)


def _exact_negatives(
    slots: np.ndarray,
    bad: np.ndarray,
    user: np.ndarray,
    item: np.ndarray,
    who: int,
    n_items: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Fill the rejected slots of one row from the items the user never reviewed and the row does not hold."""
    taken = np.concatenate([item[user == who], slots[~bad]])
    pool = np.setdiff1d(np.arange(n_items), taken)
    filled = slots.copy()
    filled[bad] = rng.choice(pool, int(bad.sum()), replace=False)
    return filled
