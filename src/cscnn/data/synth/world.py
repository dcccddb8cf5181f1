"""The world as a whole: the drawn truth, users and catalogue, the folder on disk and its summary."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.config import VISUAL_MODELS, WorldConfig
from cscnn.data import schema
from cscnn.data.io import write_table
from cscnn.data.synth.params import (
    AGE_GROUPS,
    AGE_P,
    BRAND_EFFECT_STD,
    BRANDS_PER_CATEGORY,
    DEVICE_EFFECT,
    DEVICE_P,
    DEVICES,
    GENDER_P,
    GENDERS,
    ITEM_NOISE_STD,
    LOGIT_FORMULA,
    N_SEGMENTS,
    NEW_ITEM_SHARE,
    PRICE_EFFECT,
    PRICE_LOG_STD,
    PROBABILITY_DIR,
    SEGMENT_FROM_DEMOGRAPHICS,
    SEGMENT_SHARE_OF_AFFINITY,
    SHAPES,
    TRUTH_DIR,
    USER_ACTIVITY_STD,
    Catalogue,
    CategoryStyle,
    Population,
    Truth,
)
from cscnn.data.synth.render import hsv_to_rgb, write_images
from cscnn.data.synth.simulate import break_day, write_days
from cscnn.data.synth.visual import (
    DESCRIPTION,
    VISUAL_FORMULA,
    attribute_meaning,
    attribute_names,
    category_blind_share,
    draw_attributes,
    draw_weights,
    feature_names,
    features,
    region_of,
)
from cscnn.data.truth import ATTRIBUTES_FILE, write_attributes
from cscnn.errors import ConfigError
from cscnn.files import atomic_dir, write_json


def _source_hash() -> str:
    """Hash of every module of this package (by file name, then content), so any code change shows."""
    digest = hashlib.sha256()
    modules = sorted(
        (entry for entry in resources.files(__package__).iterdir() if entry.name.endswith(".py")),
        key=lambda entry: entry.name,
    )
    for module in modules:
        digest.update(module.name.encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# Bump when a change to this package changes the output for a given config: old worlds then need --force.
# The generator's own source (every module of cscnn.data.synth) is part of its version: a world made by
# older code is regenerated, so a re-run never silently keeps data that the current generator would not produce.
GENERATOR_VERSION = f"1-{_source_hash()}"
WORLD_FILE = "world.json"


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
        names = attribute_names(cfg.visual_model)
        write_images(catalogue, truth.style, cfg, tmp / schema.IMAGES_DIR, images_rng, names)
        day_stats, oracle_auc = write_days(cfg, population, catalogue, tmp, days_rng)
        for day in cfg.broken_days:
            break_day(schema.impressions_path(tmp, day), np.random.default_rng(cfg.seed))
        _write_truth(population, catalogue, tmp / TRUTH_DIR, names)
        summary = _summary(cfg, truth, catalogue, day_stats, oracle_auc)
        write_json(tmp / WORLD_FILE, summary)
    return json.loads((out / WORLD_FILE).read_text())


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
    if cfg.visual_model not in VISUAL_MODELS:
        raise ConfigError(f"world.visual_model={cfg.visual_model!r}: choose one of {list(VISUAL_MODELS)}")
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
    # a setting added to WorldConfig after the world was made had its default value then (e.g. visual_model)
    recorded = {**dataclasses.asdict(WorldConfig()), **summary.get("config", {})}
    if recorded == wanted:
        # same config: up to date, or made by an older generator and simply regenerated (it is derived data)
        return summary if summary.get("generator_version") == GENERATOR_VERSION else None
    changed = sorted(k for k in wanted if recorded.get(k) != wanted[k])
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
        background=hsv_to_rgb(bg_hue, np.full(n_cat, 0.3), rng.uniform(0.55, 0.85, n_cat)),
        texture_freq=rng.uniform(1.0, 4.0, n_cat),
        texture_angle=rng.uniform(0.0, np.pi, n_cat),
    )
    demographic_segment = np.arange(len(AGE_GROUPS) * len(GENDERS)).reshape(len(AGE_GROUPS), len(GENDERS))
    return Truth(
        style=style,
        visual_weights=draw_weights(cfg.visual_model, n_cat, rng),
        segment_affinity=rng.normal(0.0, 1.0, (N_SEGMENTS, n_cat)),
        demographic_segment=rng.permutation(demographic_segment.ravel() % N_SEGMENTS).reshape(
            demographic_segment.shape
        ),
        brand_effect=rng.normal(0.0, BRAND_EFFECT_STD, n_cat * BRANDS_PER_CATEGORY),
        category_log_price=rng.uniform(np.log(10.0), np.log(200.0), n_cat),
    )


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
    attributes = draw_attributes(cfg.visual_model, n, rng)
    brand = category * BRANDS_PER_CATEGORY + rng.integers(0, BRANDS_PER_CATEGORY, n)
    log_price_z = rng.normal(0.0, 1.0, n)
    price = np.round(np.exp(truth.category_log_price[category] + PRICE_LOG_STD * log_price_z), 2)
    standardized = features(cfg.visual_model, attributes)
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


def _write_truth(population: Population, catalogue: Catalogue, folder: Path, names: tuple[str, ...]) -> None:
    """Latent per-item and per-user variables: the answers a model is meant to recover."""
    folder.mkdir(parents=True, exist_ok=True)
    items = catalogue.items[["item_id", "category", "first_day"]].copy()
    for i, name in enumerate(names):
        items[name] = catalogue.attributes[:, i]
    items["visual_score"] = catalogue.visual
    items["item_effect"] = catalogue.item_effect
    items.to_parquet(folder / "items.parquet", index=False)
    attributes = pd.DataFrame(catalogue.attributes, columns=list(names))
    write_attributes(folder.parent, catalogue.items["item_id"].to_numpy(), attributes, catalogue.visual)
    users = population.users[["user_id", "segment"]].copy()
    users.to_parquet(folder / "users.parquet", index=False)


def _categories(truth: Truth, cfg: WorldConfig) -> dict:
    names = feature_names(cfg.visual_model)
    categories = {}
    for c in range(cfg.n_categories):
        weights = truth.visual_weights[c]
        main = int(np.argmax(np.abs(weights)))
        categories[f"c{c:02d}"] = {
            "shape": SHAPES[truth.style.shape[c]],
            "background_rgb": [round(float(v) * 255) for v in truth.style.background[c]],
            "visual_weights": {name: round(float(w), 4) for name, w in zip(names, weights, strict=True)},
            "main_attribute": names[main],
            "main_sign": int(np.sign(weights[main])),
        }
        if cfg.visual_model == "regions":
            categories[f"c{c:02d}"]["region"] = region_of(weights)
    return categories


def _ground_truth(truth: Truth, cfg: WorldConfig) -> dict:
    demographic = {
        f"{age}/{gender}": int(truth.demographic_segment[a, g])
        for a, age in enumerate(AGE_GROUPS)
        for g, gender in enumerate(GENDERS)
    }
    return {
        "logit": LOGIT_FORMULA,
        "visual_model": cfg.visual_model,
        "visual": VISUAL_FORMULA[cfg.visual_model],
        "attributes": attribute_meaning(cfg.visual_model),
        "features": list(feature_names(cfg.visual_model)),
        # entry d-1: share of the visual variance the best shared d-dim linear summary of the features keeps
        "category_blind_share": category_blind_share(truth.visual_weights),
        "categories": _categories(truth, cfg),
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
        "files": {
            "items": f"{TRUTH_DIR}/items.parquet",
            "users": f"{TRUTH_DIR}/users.parquet",
            "probability": f"{TRUTH_DIR}/{PROBABILITY_DIR}/<day>.parquet",
            "attributes": ATTRIBUTES_FILE,
        },
    }


def _summary(
    cfg: WorldConfig, truth: Truth, catalogue: Catalogue, day_stats: list[dict], oracle_auc: float | None
) -> dict:
    rows = sum(d["rows"] for d in day_stats)
    clicks = sum(d["clicks"] for d in day_stats)
    return {
        "generator": "cscnn.data.synth",
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
        "description": (
            "Synthetic CTR world, not real data: procedurally drawn item images whose look depends on the "
            f"category (shape, background) and on {DESCRIPTION[cfg.visual_model]}; clicks from a known logistic "
            "model. See docs/synthetic_world.md."
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
            "oracle_auc": oracle_auc,  # all rows of all days, as generated (before any broken_days damage)
            "oracle_auc_last_day": day_stats[-1]["oracle_auc"],
            "oracle_auc_cold_last_day": day_stats[-1]["oracle_auc_cold"],
        },
        "days": day_stats,
        "ground_truth": _ground_truth(truth, cfg),
    }
