"""An Amazon-format world (McAuley's 2014 release) made from real photographs, with a known review model.

`generate_photo_world` writes raw source files that `cscnn data import-amazon` reads: a gzipped reviews file
(JSON lines), a gzipped metadata file (Python dict literals, `categories` as a list of paths), one JPEG per
asin, plus the generator's truth (`truth/*.parquet`, `photo_world.json`). `cscnn.data.photo_truth` turns that
truth into the oracle probability of every impression of the imported world. docs/photo_world.md explains it.

The review model: on day d, user u writes Poisson(rate_u) reviews; each picks an item among those launched by
day d (and not yet reviewed by u) with probability softmax(utility), utility = affinity[u, category] + visual
taste (the category's pixel statistic, standardised within the category, times its sign) + brand effect -
price effect + a hidden popularity the image does not show.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.data.photos import CATEGORIES, STATISTIC_MEANING, STATISTICS, cut_product, decode, load_photo
from cscnn.data.photos import pixel_statistics as statistics_of
from cscnn.errors import ConfigError
from cscnn.files import atomic_dir, write_json

REVIEWS_FILE = "reviews_Photo_Store.json.gz"
META_FILE = "meta_Photo_Store.json.gz"
IMAGES_DIR = "images"
TRUTH_DIR = "truth"
MARKER = "photo_world.json"
TRUTH_ITEMS = "items.parquet"
TRUTH_USERS = "users.parquet"

TASTE_STRENGTH = 1.0  # utility per within-category standard deviation of the category's statistic
TASTE_CLIP = 2.5  # standardised statistics are clipped to +- this
AFFINITY_STD = 0.8  # user x category affinity, Normal(0, this) ...
FAVOURITE_BOOST = 1.5  # ... plus this for the user's favourite category
BRANDS_PER_CATEGORY = 5
BRAND_STD = 0.3
PRICE_LOG_STD = 0.45
PRICE_EFFECT = 0.3  # utility per standard deviation of log price within the category (cheaper is better)
POPULARITY_STD = 0.6  # hidden item popularity: in no column and not in the image
ACTIVITY_STD = 0.8  # users' review rates are log-normal with this sd (mean: reviews_per_user_day)
USER_BLOCK = 256  # users simulated together (memory: block x items floats)
BRAND_STEMS = ("Nor", "Vel", "Astra", "Kern", "Lumo", "Brix", "Ost", "Tamb", "Quill", "Sora", "Fen", "Marl")
BRAND_ENDS = ("ex", "ia", "on", "works", "ly", "ora", "tec", "wood")
SUMMARIES = {1: "One Star", 2: "Two Stars", 3: "Three Stars", 4: "Four Stars", 5: "Five Stars"}
LOGIT_FORMULA = (
    "P(u reviews i | u reviews on day d) = softmax of utility[u, i] over the items launched by day d that u has "
    "not reviewed before day d, "
    "utility = affinity[u, category(i)] + visual(i) + brand_effect(i) - price_effect * price_z(i) + popularity(i), "
    "visual(i) = taste_strength * sign(category) * clip(z(statistic(category))(i), +-taste_clip)"
)


def _source_hash() -> str:
    """Hash of the generator's modules, so a world made by other code is never silently reused."""
    digest = hashlib.sha256()
    for name in ("photos.py", "photo_world.py"):
        digest.update(name.encode() + b"\0" + resources.files(__package__).joinpath(name).read_bytes())
    return digest.hexdigest()[:12]


GENERATOR_VERSION = f"1-{_source_hash()}"


@dataclasses.dataclass
class PhotoWorldConfig:
    """Sizes of the photo world; everything else is fixed by the seed."""

    items: int = 1500
    users: int = 2000
    days: int = 8
    seed: int = 0
    image_size: int = 64
    new_item_share: float = 0.25  # items launched after the first day (uniform over days 2..N)
    reviews_per_user_day: float = 2.25  # the mean of the users' review rates
    start_day: str = "2014-03-03"
    # Every category cuts its items from the same pool of photographs (all categories' sources together): the
    # category cannot be read from the pixels, only which statistic its buyers care about differs.
    shared_photos: bool = False


def check_config(cfg: PhotoWorldConfig) -> None:
    """Raise ConfigError naming the first bad setting."""
    minimum = {"items": len(CATEGORIES), "users": 1, "days": 1, "image_size": 16}
    for name, low in minimum.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"photo world: {name} must be an integer >= {low}, got {value!r}")
    if cfg.image_size > 512:
        raise ConfigError(f"photo world: image_size must be <= 512, got {cfg.image_size}")
    if not 0.0 <= cfg.new_item_share < 1.0:
        raise ConfigError(f"photo world: new_item_share must be in [0, 1), got {cfg.new_item_share}")
    if not cfg.reviews_per_user_day > 0:
        raise ConfigError(f"photo world: reviews_per_user_day must be > 0, got {cfg.reviews_per_user_day}")
    try:
        dt.date.fromisoformat(cfg.start_day)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"photo world: start_day must be a YYYY-MM-DD date, got {cfg.start_day!r}") from exc


def generate_photo_world(cfg: PhotoWorldConfig, out: Path, force: bool = False) -> dict:
    """Write the raw Amazon-format files and the generator's truth to `out`; return photo_world.json's content.

    A folder that already holds the world of this exact config (and generator version) is reused as it is;
    any other non-empty folder is replaced only with `force`.
    """
    out = Path(out)
    check_config(cfg)
    existing = _existing(cfg, out, force)
    if existing is not None:
        return existing
    items_rng, images_rng, users_rng, reviews_rng, text_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)
    )
    items, images = _draw_items(cfg, items_rng, images_rng)
    users = _draw_users(cfg, users_rng)
    reviews, log_partition = _draw_reviews(cfg, users, items, reviews_rng)
    for day in range(cfg.days):
        users[f"log_partition_{day}"] = log_partition[:, day]
    with atomic_dir(out) as tmp:
        (tmp / IMAGES_DIR).mkdir()
        for asin, image in zip(items["asin"], images, strict=True):
            (tmp / IMAGES_DIR / f"{asin}.jpg").write_bytes(image)
        _write_lines(tmp / META_FILE, (repr(record) for record in _meta_records(items)))
        _write_lines(tmp / REVIEWS_FILE, (json.dumps(r) for r in _review_records(cfg, reviews, users, items, text_rng)))
        (tmp / TRUTH_DIR).mkdir()
        items.to_parquet(tmp / TRUTH_DIR / TRUTH_ITEMS, index=False)
        users.to_parquet(tmp / TRUTH_DIR / TRUTH_USERS, index=False)
        write_json(tmp / MARKER, _summary(cfg, items, users, reviews))
    return json.loads((out / MARKER).read_text())


def _existing(cfg: PhotoWorldConfig, out: Path, force: bool) -> dict | None:
    if force or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    marker = out / MARKER
    if not marker.is_file():
        raise ConfigError(f"{out}: folder exists and holds no photo world ({MARKER}); pass --force to replace it")
    summary = json.loads(marker.read_text())
    if summary.get("config") == dataclasses.asdict(cfg) and summary.get("generator_version") == GENERATOR_VERSION:
        return summary
    raise ConfigError(
        f"{out}: holds a photo world made with another config or generator version; pass --force to replace it"
    )


def _draw_items(
    cfg: PhotoWorldConfig, rng: np.random.Generator, images_rng: np.random.Generator
) -> tuple[pd.DataFrame, list[bytes]]:
    """The catalogue with its latent variables (one row per item) and each item's JPEG bytes."""
    n = cfg.items
    category = rng.permutation(np.arange(n) % len(CATEGORIES))
    if cfg.shared_photos:
        pool = sorted({name for spec in CATEGORIES for name in spec.sources})
        source = np.array(pool)[rng.integers(len(pool), size=n)]
    else:
        source = np.array([CATEGORIES[c].sources[rng.integers(len(CATEGORIES[c].sources))] for c in category])
    new = rng.random(n) < cfg.new_item_share if cfg.days > 1 else np.zeros(n, bool)
    launch_day = np.where(new, rng.integers(1, max(cfg.days, 2), n), 0)
    photos = {name: load_photo(name) for name in sorted(set(source))}
    images = [cut_product(photos[name], cfg.image_size, images_rng) for name in source]
    stats = np.stack([statistics_of(decode(image)) for image in images])
    items = pd.DataFrame({"asin": _ids(rng, n, "B0", 8), "category": category, "source": source})
    items["launch_day"] = launch_day
    for k, name in enumerate(STATISTICS):
        items[name] = stats[:, k]
    items["taste_z"] = 0.0
    for c, spec in enumerate(CATEGORIES):
        members = category == c
        values = stats[members, STATISTICS.index(spec.statistic)]
        spread = values.std() if members.sum() > 1 and values.std() > 0 else 1.0
        items.loc[members, "taste_z"] = np.clip((values - values.mean()) / spread, -TASTE_CLIP, TASTE_CLIP)
    sign = np.array([spec.sign for spec in CATEGORIES])[category]
    items["visual"] = TASTE_STRENGTH * sign * items["taste_z"].to_numpy()
    names = _brand_names(rng)
    brand_index = rng.integers(0, BRANDS_PER_CATEGORY, n)
    brand_effect = rng.normal(0.0, BRAND_STD, (len(CATEGORIES), BRANDS_PER_CATEGORY))
    items["brand"] = names[category, brand_index]
    items["brand_effect"] = brand_effect[category, brand_index]
    price_z = rng.normal(0.0, 1.0, n)
    log_price = np.array([spec.log_price for spec in CATEGORIES])[category]
    items["price"] = np.round(np.exp(log_price + PRICE_LOG_STD * price_z), 2)
    items["price_z"] = price_z
    items["popularity"] = rng.normal(0.0, POPULARITY_STD, n)
    items["utility"] = items["visual"] + items["brand_effect"] - PRICE_EFFECT * price_z + items["popularity"]
    return items, images


def _ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> list[str]:
    """`n` distinct ids: `prefix` plus `length` random characters of 0-9A-Z (like asins and reviewer ids)."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids: dict[str, None] = {}
    while len(ids) < n:
        for row in rng.integers(0, len(alphabet), (n - len(ids), length)):
            ids[prefix + "".join(alphabet[row])] = None
    return list(ids)[:n]


def _brand_names(rng: np.random.Generator) -> np.ndarray:
    """[category, brand] distinct made-up brand names."""
    names = [f"{stem}{end}" for stem in BRAND_STEMS for end in BRAND_ENDS]
    chosen = rng.choice(len(names), len(CATEGORIES) * BRANDS_PER_CATEGORY, replace=False)
    return np.array(names, dtype=object)[chosen].reshape(len(CATEGORIES), BRANDS_PER_CATEGORY)


def _draw_users(cfg: PhotoWorldConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Reviewer ids, review rates and the user x category affinity (one column per category)."""
    n = cfg.users
    users = pd.DataFrame({"reviewer_id": _ids(rng, n, "A", 13)})
    users["favourite"] = rng.integers(0, len(CATEGORIES), n)
    activity = rng.normal(0.0, ACTIVITY_STD, n)
    users["rate"] = cfg.reviews_per_user_day * np.exp(activity - ACTIVITY_STD**2 / 2)  # mean: reviews_per_user_day
    affinity = rng.normal(0.0, AFFINITY_STD, (n, len(CATEGORIES)))
    affinity[np.arange(n), users["favourite"].to_numpy()] += FAVOURITE_BOOST
    for c in range(len(CATEGORIES)):
        users[f"affinity_{c}"] = affinity[:, c]
    return users


def affinity_matrix(users: pd.DataFrame) -> np.ndarray:
    return users[[f"affinity_{c}" for c in range(len(CATEGORIES))]].to_numpy()


def _draw_reviews(
    cfg: PhotoWorldConfig, users: pd.DataFrame, items: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """(user, item, day) of every review, and log of the softmax denominator per [user, day].

    Each user-day draws Poisson(rate) reviews, sampled without replacement (Gumbel top-k) from the launched
    items the user has not reviewed on an earlier day; the denominator sums over those same items.
    """
    affinity = affinity_matrix(users)
    category = items["category"].to_numpy()
    utility_item = items["utility"].to_numpy()
    launch = items["launch_day"].to_numpy()
    rate = users["rate"].to_numpy()
    log_partition = np.zeros((cfg.users, cfg.days))
    found: list[np.ndarray] = []
    for start in range(0, cfg.users, USER_BLOCK):
        block = np.arange(start, min(start + USER_BLOCK, cfg.users))
        utility = affinity[block][:, category] + utility_item[None, :]
        reviewed = np.zeros(utility.shape, dtype=bool)
        for day in range(cfg.days):
            open_items = (launch[None, :] <= day) & ~reviewed
            logits = np.where(open_items, utility, -np.inf)
            log_partition[block, day] = _logsumexp(logits)
            counts = np.minimum(rng.poisson(rate[block]), open_items.sum(axis=1))
            keys = logits + rng.gumbel(size=logits.shape)
            top = int(counts.max())
            if top == 0:
                continue
            best = np.argpartition(-keys, top - 1, axis=1)[:, :top]
            rows, slots = np.nonzero(np.arange(top)[None, :] < counts[:, None])
            chosen = best[rows, slots]
            reviewed[rows, chosen] = True
            found.append(np.column_stack([block[rows], chosen, np.full(len(rows), day)]))
    triples = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    reviews = pd.DataFrame(triples, columns=["user", "item", "day"]).sort_values(["day", "user", "item"])
    return reviews.reset_index(drop=True), log_partition


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp)) of each row; -inf for a row of -inf only (a user who has reviewed every launched item)."""
    top = logits.max(axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(logits - safe[:, None]).sum(axis=1))


def _meta_records(items: pd.DataFrame) -> list[dict]:
    """2014 metadata: asin, title, price, imUrl, brand, categories (a list of category paths)."""
    records = []
    for row in items.itertuples(index=False):
        spec = CATEGORIES[row.category]
        title = f"{row.brand} {spec.name} No. {row.asin[-4:]}"  # names no source photograph
        records.append(
            {
                "asin": row.asin,
                "title": title,
                "price": float(row.price),
                "imUrl": f"http://ecx.images-amazon.com/images/I/{row.asin}.jpg",
                "brand": row.brand,
                "categories": [[spec.department, spec.name]],
            }
        )
    return records


def _review_records(
    cfg: PhotoWorldConfig, reviews: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, rng: np.random.Generator
) -> list[dict]:
    """2014 reviews: reviewerID, asin, reviewerName, helpful, reviewText, overall, summary, unixReviewTime
    (midnight UTC of the day, as in the release), reviewTime. The rating leans on the item's visual taste."""
    start = dt.datetime.fromisoformat(cfg.start_day).replace(tzinfo=dt.UTC)
    user, item, day = (reviews[name].to_numpy() for name in ("user", "item", "day"))
    visual = items["visual"].to_numpy()[item]
    ratings = np.clip(np.rint(4.0 + 0.6 * visual + rng.normal(0.0, 0.9, len(reviews))), 1, 5).astype(int)
    reviewer = users["reviewer_id"].to_numpy()[user]
    asin = items["asin"].to_numpy()[item]
    leaf = np.array([spec.name for spec in CATEGORIES])[items["category"].to_numpy()[item]]
    records = []
    for k in range(len(reviews)):
        when = start + dt.timedelta(days=int(day[k]))
        summary = SUMMARIES[int(ratings[k])]
        records.append(
            {
                "reviewerID": str(reviewer[k]),
                "asin": str(asin[k]),
                "reviewerName": f"Buyer {reviewer[k][-4:]}",
                "helpful": [0, 0],
                "reviewText": f"{summary} for this {leaf[k]} item.",
                "overall": float(ratings[k]),
                "summary": summary,
                "unixReviewTime": int(when.timestamp()),
                "reviewTime": f"{when.month:02d} {when.day}, {when.year}",
            }
        )
    return records


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    """Gzipped text lines; no name or time in the gzip header, so the bytes depend on the seed only."""
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as packed:
        packed.write("".join(line + "\n" for line in lines).encode("utf-8"))


def _summary(cfg: PhotoWorldConfig, items: pd.DataFrame, users: pd.DataFrame, reviews: pd.DataFrame) -> dict:
    start = dt.date.fromisoformat(cfg.start_day)
    per_day = reviews.groupby("day").size().reindex(range(cfg.days), fill_value=0)
    categories = []
    for c, spec in enumerate(CATEGORIES):
        members = items["category"] == c
        categories.append(
            {
                "name": spec.name,
                "path": [spec.department, spec.name],
                "sources": list(spec.sources),
                "statistic": spec.statistic,
                "sign": spec.sign,
                "taste": spec.taste,
                "items": int(members.sum()),
                "reviews": int(reviews["item"].isin(np.flatnonzero(members)).sum()),
            }
        )
    return {
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
        "files": {"reviews": REVIEWS_FILE, "meta": META_FILE, "images": IMAGES_DIR, "truth": TRUTH_DIR},
        "days": [(start + dt.timedelta(days=d)).isoformat() for d in range(cfg.days)],
        "counts": {
            "items": len(items),
            "reviewed_items": int(reviews["item"].nunique()),
            "new_items": int((items["launch_day"] > 0).sum()),
            "users": len(users),
            "reviewers": int(reviews["user"].nunique()),
            "reviews": len(reviews),
            "reviews_per_day": [int(v) for v in per_day],
        },
        "review_model": LOGIT_FORMULA,
        "constants": {
            "taste_strength": TASTE_STRENGTH,
            "taste_clip": TASTE_CLIP,
            "affinity_std": AFFINITY_STD,
            "favourite_boost": FAVOURITE_BOOST,
            "brand_std": BRAND_STD,
            "price_effect": PRICE_EFFECT,
            "popularity_std": POPULARITY_STD,
            "activity_std": ACTIVITY_STD,
        },
        "statistics": STATISTIC_MEANING,
        "categories": categories,
    }
