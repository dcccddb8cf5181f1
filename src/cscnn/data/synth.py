"""A synthetic world in which category-aware visual modelling has something real to find.

Every item gets a procedurally drawn image whose look depends on its category (object shape, background
palette and texture) and on five continuous visual attributes (hue, size, brightness, stripes, height).
Clicks follow a known logistic model in which the attributes matter *differently per category*: the same
attribute raises the click rate in one category and lowers it in another. The ground truth is written next
to the data (world.json, truth/*.parquet) so tests and docs can check what a model recovers.
See docs/synthetic_world.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import roc_auc_score

from cscnn.config import WorldConfig
from cscnn.data import schema
from cscnn.data.io import write_table
from cscnn.errors import ConfigError
from cscnn.files import atomic_dir, write_json

# Bump when a change to this module changes the output for a given config: old worlds then need --force.
# The generator's own source is part of its version: a world made by older code is regenerated, so a
# re-run never silently keeps data that the current generator would not produce.
GENERATOR_VERSION = f"1-{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]}"
WORLD_FILE = "world.json"
TRUTH_DIR = "truth"

ATTRIBUTES = ("hue", "size", "brightness", "stripes", "height")
ATTRIBUTE_MEANING = {
    "hue": "object hue, 0 -> red, 1 -> violet (0.8 of the colour wheel, no wrap-around)",
    "size": "object radius, 0 -> 14% of the image side, 1 -> 32%",
    "brightness": "object HSV value, 0 -> 0.45, 1 -> 1.0",
    "stripes": "stripe frequency on the object, 0 -> 1.5, 1 -> 7 cycles per image side",
    "height": "vertical placement of the object centre, 0 -> 70% down the image, 1 -> 30% down",
}
SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "star", "hexagon")
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.2, 0.3, 0.25, 0.15, 0.1)
GENDERS = ("f", "m", "unknown")
GENDER_P = (0.48, 0.48, 0.04)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_P = (0.6, 0.3, 0.1)
DEVICE_EFFECT = (0.1, -0.1, 0.0)

N_SEGMENTS = 6  # latent user segments: each has its own taste over categories
SEGMENT_FROM_DEMOGRAPHICS = 0.6  # chance a user's segment is the one their (age_group, gender) maps to
SEGMENT_SHARE_OF_AFFINITY = 0.8  # the rest of a user's category affinity is individual taste
SHARED_VISUAL_WEIGHT = 0.3  # a category-independent brightness preference, small next to the specific part
SECONDARY_VISUAL_WEIGHT = 0.5  # each category's second attribute is the next category's main one, sign flipped
NEW_ITEM_SHARE = 0.2  # share of a day's impressions that go to the items introduced that day
BRANDS_PER_CATEGORY = 4
BRAND_EFFECT_STD = 0.2
PRICE_EFFECT = 0.15  # logit per std of log price below the category's typical price
PRICE_LOG_STD = 0.5
ITEM_NOISE_STD = 0.25  # per-item appeal not visible in the image: learnable only from the item id
USER_ACTIVITY_STD = 1.0  # log-normal spread of how many requests a user makes
RENDER_BATCH = 256
TEXTURE_DEPTH = 0.25
STRIPE_DEPTH = 0.4
PNG_COMPRESS_LEVEL = 1

LOGIT_FORMULA = (
    "logit = base_logit + affinity_weight * affinity[user, category] + visual_weight * visual[item] "
    "- position_weight * (position - 1) + device_effect[device] + item_effect[item]; "
    "click ~ Bernoulli(sigmoid(logit)); visual[item] = w[category] . z[item], z = (attribute - 0.5) * sqrt(12) "
    "(unit variance), |w[category]| = 1; item_effect = brand_effect + price_effect + item_noise"
)


@dataclass(frozen=True)
class CategoryStyle:
    """How each category looks: one entry per category."""

    shape: np.ndarray  # [C] index into SHAPES
    background: np.ndarray  # [C, 3] RGB in 0..1
    texture_freq: np.ndarray  # [C] background texture cycles per image side
    texture_angle: np.ndarray  # [C] background texture orientation, radians


@dataclass(frozen=True)
class Truth:
    """The parameters of the click model, drawn once per seed."""

    style: CategoryStyle
    visual_weights: np.ndarray  # [C, A], unit norm rows
    segment_affinity: np.ndarray  # [N_SEGMENTS, C]
    demographic_segment: np.ndarray  # [len(AGE_GROUPS), len(GENDERS)] -> segment
    brand_effect: np.ndarray  # [C * BRANDS_PER_CATEGORY]
    category_log_price: np.ndarray  # [C] typical log price


@dataclass(frozen=True)
class Population:
    users: pd.DataFrame  # contract columns + segment
    affinity: np.ndarray  # [U, C]
    activity: np.ndarray  # [U] probability of making a request


@dataclass(frozen=True)
class Catalogue:
    items: pd.DataFrame  # contract columns + first_day
    attributes: np.ndarray  # [N, A] in 0..1
    category_index: np.ndarray  # [N]
    first_day: np.ndarray  # [N] day index the item enters the catalogue
    visual: np.ndarray  # [N] visual score (unit variance)
    item_effect: np.ndarray  # [N] brand + price + noise


def generate_world(cfg: WorldConfig, out: Path, force: bool = False) -> dict:
    """Write the world for `cfg` to `out` and return its summary (the content of world.json).

    A folder that already holds this exact world is reused (demo re-runs stay fast); one that holds
    anything else is only replaced with `force=True`.
    """
    out = Path(out)
    _check_config(cfg)
    existing = _existing_world(cfg, out, force)
    if existing is not None:
        return existing
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)]
    truth_rng, users_rng, items_rng, images_rng, days_rng = streams
    truth = _draw_truth(cfg, truth_rng)
    population = _draw_users(cfg, truth, users_rng)
    catalogue = _draw_items(cfg, truth, items_rng)
    with atomic_dir(out) as tmp:
        write_table(population.users, tmp / schema.USERS_FILE, schema.USERS)
        write_table(catalogue.items, tmp / schema.ITEMS_FILE, schema.ITEMS)
        _write_images(catalogue, truth.style, cfg, tmp / schema.IMAGES_DIR, images_rng)
        day_stats = _write_days(cfg, population, catalogue, tmp, days_rng)
        for day in cfg.broken_days:
            _break_day(schema.impressions_path(tmp, day), np.random.default_rng(cfg.seed))
        _write_truth(population, catalogue, tmp / TRUTH_DIR)
        summary = _summary(cfg, truth, catalogue, day_stats)
        write_json(tmp / WORLD_FILE, summary)
    return json.loads((out / WORLD_FILE).read_text())


def render_images(
    attributes: np.ndarray,
    category_index: np.ndarray,
    style: CategoryStyle,
    size: int,
    clutter: int,
    pixel_noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw one RGB image per item, uint8 [N, size, size, 3], in vectorised batches."""
    images = np.empty((len(attributes), size, size, 3), dtype=np.uint8)
    for start in range(0, len(attributes), RENDER_BATCH):
        stop = start + RENDER_BATCH
        images[start:stop] = _render_batch(
            attributes[start:stop], category_index[start:stop], style, size, clutter, pixel_noise, rng
        )
    return images


def _check_config(cfg: WorldConfig) -> None:
    positive = ("n_categories", "n_items", "n_users", "n_days", "impressions_per_day", "candidates_per_request")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"world.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.candidates_per_request > cfg.n_items:
        raise ConfigError(
            f"world.candidates_per_request ({cfg.candidates_per_request}) exceeds world.n_items ({cfg.n_items})"
        )
    if cfg.new_items_per_day < 0 or cfg.clutter < 0 or cfg.pixel_noise < 0:
        raise ConfigError("world.new_items_per_day, world.clutter and world.pixel_noise must be >= 0")
    if cfg.image_size < 8:
        raise ConfigError(f"world.image_size must be >= 8, got {cfg.image_size}")
    try:
        pd.Timestamp(cfg.start_day)
    except ValueError as exc:
        raise ConfigError(f"world.start_day must be a YYYY-MM-DD date, got {cfg.start_day!r}") from exc
    start = dt.date.fromisoformat(cfg.start_day)
    days = {(start + dt.timedelta(days=i)).isoformat() for i in range(cfg.n_days)}
    outside = sorted(set(cfg.broken_days) - days)
    if outside:
        raise ConfigError(f"world.broken_days {outside} are not days of this world ({min(days)}..{max(days)})")


def _existing_world(cfg: WorldConfig, out: Path, force: bool) -> dict | None:
    """The summary of the world already in `out` when it matches `cfg`; raise when replacing needs force."""
    if force or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    marker = out / WORLD_FILE
    if not marker.is_file():
        raise ConfigError(f"{out} exists but holds no synthetic world ({WORLD_FILE}); pass force=True (--force)")
    summary = json.loads(marker.read_text())
    wanted = dataclasses.asdict(cfg)
    if summary.get("config") == wanted:
        # same config: up to date, or made by an older generator and simply regenerated (it is derived data)
        return summary if summary.get("generator_version") == GENERATOR_VERSION else None
    changed = sorted(k for k in wanted if summary.get("config", {}).get(k) != wanted[k])
    raise ConfigError(
        f"{out} holds a world generated with another config (differs in: {', '.join(changed)}); "
        "pass force=True (CLI: --force) to replace it"
    )


def _draw_truth(cfg: WorldConfig, rng: np.random.Generator) -> Truth:
    n_cat = cfg.n_categories
    shape_order = rng.permutation(len(SHAPES))
    bg_hue = (np.arange(n_cat) / n_cat + rng.uniform()) % 1.0
    style = CategoryStyle(
        shape=shape_order[np.arange(n_cat) % len(SHAPES)],
        background=_hsv_to_rgb(bg_hue, np.full(n_cat, 0.3), rng.uniform(0.55, 0.85, n_cat)),
        texture_freq=rng.uniform(1.0, 4.0, n_cat),
        texture_angle=rng.uniform(0.0, np.pi, n_cat),
    )
    demographic_segment = np.arange(len(AGE_GROUPS) * len(GENDERS)).reshape(len(AGE_GROUPS), len(GENDERS))
    return Truth(
        style=style,
        visual_weights=_visual_weights(n_cat, rng),
        segment_affinity=rng.normal(0.0, 1.0, (N_SEGMENTS, n_cat)),
        demographic_segment=rng.permutation(demographic_segment.ravel() % N_SEGMENTS).reshape(
            demographic_segment.shape
        ),
        brand_effect=rng.normal(0.0, BRAND_EFFECT_STD, n_cat * BRANDS_PER_CATEGORY),
        category_log_price=rng.uniform(np.log(10.0), np.log(200.0), n_cat),
    )


def _visual_weights(n_cat: int, rng: np.random.Generator) -> np.ndarray:
    """Per-category weights over ATTRIBUTES: each category cares about its own main attribute.

    Category c's main attribute rotates through the attributes (sign drawn by seed, flipped each time the
    rotation wraps). Its second attribute is category c+1's main one with the opposite sign, so adjacent
    categories disagree about the same attribute. A small shared brightness preference is added on top.
    """
    n_attr = len(ATTRIBUTES)
    order = rng.permutation(n_attr)
    base_sign = rng.choice([-1.0, 1.0], n_attr)
    cats = np.arange(n_cat)
    main = order[cats % n_attr]
    sign = base_sign[cats % n_attr] * np.where((cats // n_attr) % 2 == 0, 1.0, -1.0)
    weights = np.zeros((n_cat, n_attr))
    weights[cats, main] = sign
    if n_cat > 1:
        nxt = (cats + 1) % n_cat
        weights[cats, main[nxt]] += -sign[nxt] * SECONDARY_VISUAL_WEIGHT
    weights[:, ATTRIBUTES.index("brightness")] += SHARED_VISUAL_WEIGHT
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def _draw_users(cfg: WorldConfig, truth: Truth, rng: np.random.Generator) -> Population:
    n = cfg.n_users
    age = rng.choice(len(AGE_GROUPS), n, p=AGE_P)
    gender = rng.choice(len(GENDERS), n, p=GENDER_P)
    from_demographics = rng.random(n) < SEGMENT_FROM_DEMOGRAPHICS
    segment = np.where(from_demographics, truth.demographic_segment[age, gender], rng.integers(0, N_SEGMENTS, n))
    taste = rng.normal(0.0, 1.0, (n, cfg.n_categories))
    share = SEGMENT_SHARE_OF_AFFINITY
    affinity = share * truth.segment_affinity[segment] + np.sqrt(1.0 - share**2) * taste
    activity = rng.lognormal(0.0, USER_ACTIVITY_STD, n)
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n)],
            "age_group": np.asarray(AGE_GROUPS, dtype=object)[age],
            "gender": np.asarray(GENDERS, dtype=object)[gender],
            "segment": segment,
        }
    )
    return Population(users=users, affinity=affinity, activity=activity / activity.sum())


def _draw_items(cfg: WorldConfig, truth: Truth, rng: np.random.Generator) -> Catalogue:
    n = cfg.n_items + cfg.new_items_per_day * (cfg.n_days - 1)
    first_day = np.concatenate(
        [np.zeros(cfg.n_items, dtype=np.int64), np.repeat(np.arange(1, cfg.n_days), cfg.new_items_per_day)]
    )
    category = rng.integers(0, cfg.n_categories, n)
    attributes = rng.random((n, len(ATTRIBUTES)))
    brand = category * BRANDS_PER_CATEGORY + rng.integers(0, BRANDS_PER_CATEGORY, n)
    log_price_z = rng.normal(0.0, 1.0, n)
    price = np.round(np.exp(truth.category_log_price[category] + PRICE_LOG_STD * log_price_z), 2)
    standardized = (attributes - 0.5) * np.sqrt(12.0)
    visual = np.einsum("na,na->n", standardized, truth.visual_weights[category])
    item_effect = truth.brand_effect[brand] - PRICE_EFFECT * log_price_z + rng.normal(0.0, ITEM_NOISE_STD, n)
    item_ids = [f"i{i:06d}" for i in range(n)]
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "category": [f"c{c:02d}" for c in category],
            "image": [f"{item_id}.png" for item_id in item_ids],
            "brand": [f"b{b:03d}" for b in brand],
            "price": price,
            "first_day": first_day,
            schema.AVAILABLE_FROM: [
                (dt.date.fromisoformat(cfg.start_day) + dt.timedelta(days=int(d))).isoformat() for d in first_day
            ],
        }
    )
    return Catalogue(
        items=items,
        attributes=attributes,
        category_index=category,
        first_day=first_day,
        visual=visual,
        item_effect=item_effect,
    )


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB in 0..1, shape [..., 3]."""
    k = (np.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
    chroma = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return value[..., None] - value[..., None] * saturation[..., None] * chroma


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-the-shape mask in the object's own frame (unit radius)."""
    if shape == "disc":
        return u**2 + v**2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":
        return (v <= 0.5) & (v >= -1.0 + np.sqrt(3.0) * np.abs(u))
    if shape == "ring":
        radius = np.sqrt(u**2 + v**2)
        return (radius >= 0.55) & (radius <= 1.0)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "star":
        return np.sqrt(u**2 + v**2) <= 0.5 + 0.25 * (1.0 + np.cos(5.0 * np.arctan2(v, u)))
    if shape == "hexagon":
        return np.maximum(0.866 * np.abs(u) + 0.5 * np.abs(v), np.abs(v)) <= 0.9
    raise ValueError(f"unknown shape {shape!r}")


def _render_batch(
    attributes: np.ndarray,
    category_index: np.ndarray,
    style: CategoryStyle,
    size: int,
    clutter: int,
    pixel_noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw into colour planes [3, B, S, S] (contiguous per channel, float32), transpose once at the end.

    x is [1, 1, S] and y is [1, S, 1], so per-item terms stay separable until they are combined.
    """
    grid = ((np.arange(size) + 0.5) / size).astype(np.float32)
    x, y = grid[None, None, :], grid[None, :, None]
    planes = _background(category_index, style, x, y, rng)
    for _ in range(clutter):
        _draw_distractor(planes, x, y, rng)
    _draw_object(planes, attributes, style.shape[category_index], x, y, rng)
    planes *= 255.0
    planes += rng.standard_normal(planes.shape, dtype=np.float32) * np.float32(pixel_noise)
    planes += 0.5
    np.clip(planes, 0.0, 255.0, out=planes)
    return planes.astype(np.uint8).transpose(1, 2, 3, 0)


def _column(values: np.ndarray) -> np.ndarray:
    """Per-item scalars as float32 shaped to broadcast against [B, H, W] grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _wave(along_x: np.ndarray, along_y: np.ndarray) -> np.ndarray:
    """sin(along_x + along_y) for [B, 1, W] and [B, H, 1] phases: two outer products instead of H*W sines."""
    return np.sin(along_x) * np.cos(along_y) + np.cos(along_x) * np.sin(along_y)


def _background(
    category_index: np.ndarray, style: CategoryStyle, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The category's palette under its own oriented wave texture (random phase per item)."""
    angle = style.texture_angle[category_index]
    omega = 2.0 * np.pi * style.texture_freq[category_index]
    phase = _column(rng.uniform(0.0, 2.0 * np.pi, len(category_index)))
    wave = 0.5 + 0.5 * _wave(_column(omega * np.cos(angle)) * x + phase, _column(omega * np.sin(angle)) * y)
    shade = 1.0 - np.float32(TEXTURE_DEPTH) * wave
    return shade[None] * style.background[category_index].T.astype(np.float32)[:, :, None, None]


def _paint(planes: np.ndarray, colour: np.ndarray, mask: np.ndarray) -> None:
    """Set the pixels under `mask` [B, S, S] to each item's `colour` [B, 3], plane by plane."""
    for channel in range(3):
        np.copyto(planes[channel], _column(colour[:, channel]), where=mask)


def _draw_distractor(planes: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """Paint one small disc or square of random colour and place (behind the main object)."""
    batch = planes.shape[1]
    dx2 = (x - _column(rng.uniform(0.05, 0.95, batch))) ** 2
    dy2 = (y - _column(rng.uniform(0.05, 0.95, batch))) ** 2
    radius = _column(rng.uniform(0.03, 0.08, batch))
    is_disc = rng.random(batch)[:, None, None] < 0.5
    mask = np.where(is_disc, dx2 + dy2, np.maximum(dx2, dy2)) <= radius**2
    _paint(planes, rng.random((batch, 3)), mask)


def _draw_object(
    planes: np.ndarray,
    attributes: np.ndarray,
    shape: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint the category's shape, coloured, sized, striped and placed by the item's attributes."""
    batch = planes.shape[1]
    attr = {name: attributes[:, i] for i, name in enumerate(ATTRIBUTES)}
    radius = 0.14 + 0.18 * attr["size"]
    rotation = rng.uniform(-np.pi / 6, np.pi / 6, batch)
    dx = x - _column(rng.uniform(0.35, 0.65, batch))
    dy = y - _column(0.7 - 0.4 * attr["height"])
    cos, sin = np.cos(rotation), np.sin(rotation)
    u = _column(cos / radius) * dx + _column(sin / radius) * dy
    v = _column(-sin / radius) * dx + _column(cos / radius) * dy
    mask = np.zeros(planes.shape[1:], dtype=bool)
    for shape_id in np.unique(shape):
        rows = shape == shape_id
        mask[rows] = _shape_mask(SHAPES[shape_id], u[rows], v[rows])
    omega = 2.0 * np.pi * (1.5 + 5.5 * attr["stripes"])
    dark = _wave(_column(omega * cos) * dx, _column(omega * sin) * dy) > 0
    colour = _hsv_to_rgb(0.8 * attr["hue"], np.full(batch, 0.85), 0.45 + 0.55 * attr["brightness"])
    _paint(planes, colour, mask & ~dark)
    _paint(planes, colour * (1.0 - STRIPE_DEPTH), mask & dark)


def _write_images(
    catalogue: Catalogue, style: CategoryStyle, cfg: WorldConfig, folder: Path, rng: np.random.Generator
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = render_images(
        catalogue.attributes, catalogue.category_index, style, cfg.image_size, cfg.clutter, cfg.pixel_noise, rng
    )
    for name, pixels in zip(catalogue.items["image"], images, strict=True):
        Image.fromarray(pixels).save(folder / name, compress_level=PNG_COMPRESS_LEVEL)


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


def _simulate_day(
    cfg: WorldConfig, day: int, population: Population, catalogue: Catalogue, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """One day's impressions (contract columns) and the true click probability of each row."""
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
    return frame, probability


def _write_days(
    cfg: WorldConfig, population: Population, catalogue: Catalogue, root: Path, rng: np.random.Generator
) -> list[dict]:
    """Write impressions/<day>.parquet for every day; return per-day statistics."""
    shown_before = np.zeros(len(catalogue.items), dtype=bool)
    item_row = pd.Series(np.arange(len(catalogue.items)), index=catalogue.items["item_id"])
    stats = []
    for day in range(cfg.n_days):
        frame, probability = _simulate_day(cfg, day, population, catalogue, rng)
        name = frame["ts"].iloc[0].strftime("%Y-%m-%d")
        write_table(frame, schema.impressions_path(root, name), schema.IMPRESSIONS)
        rows = item_row[frame["item_id"]].to_numpy()
        cold = ~shown_before[rows]
        stats.append(
            {
                "day": name,
                "rows": len(frame),
                "requests": int(frame["request_id"].nunique()),
                "clicks": int(frame["click"].sum()),
                "ctr": float(frame["click"].mean()),
                "items_available": int((catalogue.first_day <= day).sum()),
                "new_items": int((catalogue.first_day == day).sum()),
                "cold_rows": int(cold.sum()),
                "cold_items_shown": len(np.unique(rows[cold])),
                "oracle_auc": float(roc_auc_score(frame["click"].to_numpy(), probability)),
            }
        )
        shown_before[rows] = True
    return stats


def _break_day(path: Path, rng: np.random.Generator) -> None:
    """Damage a written day the way a broken export would (bypassing the contract on purpose)."""
    frame = pd.read_parquet(path)
    bad_labels = rng.choice(len(frame), size=max(1, len(frame) // 100), replace=False)
    frame.loc[bad_labels, "click"] = 2
    duplicates = frame.sample(n=max(1, len(frame) // 200), random_state=0)
    pd.concat([frame, duplicates], ignore_index=True).to_parquet(path, index=False)


def _write_truth(population: Population, catalogue: Catalogue, folder: Path) -> None:
    """Latent per-item and per-user variables: the answers a model is meant to recover."""
    folder.mkdir(parents=True, exist_ok=True)
    items = catalogue.items[["item_id", "category", "first_day"]].copy()
    for i, name in enumerate(ATTRIBUTES):
        items[name] = catalogue.attributes[:, i]
    items["visual_score"] = catalogue.visual
    items["item_effect"] = catalogue.item_effect
    items.to_parquet(folder / "items.parquet", index=False)
    users = population.users[["user_id", "segment"]].copy()
    users.to_parquet(folder / "users.parquet", index=False)


def _ground_truth(truth: Truth, cfg: WorldConfig) -> dict:
    categories = {}
    for c in range(cfg.n_categories):
        weights = truth.visual_weights[c]
        main = int(np.argmax(np.abs(weights)))
        categories[f"c{c:02d}"] = {
            "shape": SHAPES[truth.style.shape[c]],
            "background_rgb": [round(float(v) * 255) for v in truth.style.background[c]],
            "visual_weights": {name: round(float(w), 4) for name, w in zip(ATTRIBUTES, weights, strict=True)},
            "main_attribute": ATTRIBUTES[main],
            "main_sign": int(np.sign(weights[main])),
        }
    demographic = {
        f"{age}/{gender}": int(truth.demographic_segment[a, g])
        for a, age in enumerate(AGE_GROUPS)
        for g, gender in enumerate(GENDERS)
    }
    return {
        "logit": LOGIT_FORMULA,
        "attributes": ATTRIBUTE_MEANING,
        "categories": categories,
        "segment_category_affinity": np.round(truth.segment_affinity, 4).tolist(),
        "demographic_segment": demographic,
        "segment_from_demographics": SEGMENT_FROM_DEMOGRAPHICS,
        "segment_share_of_affinity": SEGMENT_SHARE_OF_AFFINITY,
        "device_effect": dict(zip(DEVICES, DEVICE_EFFECT, strict=True)),
        "device_share": dict(zip(DEVICES, DEVICE_P, strict=True)),
        "new_item_share": NEW_ITEM_SHARE,
        "brand_effect_std": BRAND_EFFECT_STD,
        "price_effect_per_std_log_price": -PRICE_EFFECT,
        "item_noise_std": ITEM_NOISE_STD,
        "files": {"items": f"{TRUTH_DIR}/items.parquet", "users": f"{TRUTH_DIR}/users.parquet"},
    }


def _summary(cfg: WorldConfig, truth: Truth, catalogue: Catalogue, day_stats: list[dict]) -> dict:
    rows = sum(d["rows"] for d in day_stats)
    clicks = sum(d["clicks"] for d in day_stats)
    return {
        "generator": "cscnn.data.synth",
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
        "description": (
            "Synthetic CTR world, not real data: procedurally drawn item images whose look depends on the "
            "category (shape, background) and on five visual attributes; clicks from a known logistic model "
            "in which the attributes matter differently per category. See docs/synthetic_world.md."
        ),
        "totals": {
            "rows": rows,
            "clicks": clicks,
            "ctr": clicks / rows,
            "items": len(catalogue.items),
            "users": cfg.n_users,
            "days": len(day_stats),
            "categories": cfg.n_categories,
            "cold_rows_last_day": day_stats[-1]["cold_rows"],
        },
        "days": day_stats,
        "ground_truth": _ground_truth(truth, cfg),
    }
