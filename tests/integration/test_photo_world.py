"""The photo world: an Amazon-format dataset cut from real photographs, imported with import-amazon, with its
oracle truth (`cscnn data photo-amazon`, docs/photo_world.md). A tiny world, generated once (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cscnn.data import schema
from cscnn.data.amazon import REPORT_FILE
from cscnn.data.io import open_world
from cscnn.data.photo_truth import impression_probability, photo_amazon, probability_path, write_photo_truth
from cscnn.data.photo_world import (
    IMAGES_DIR,
    MARKER,
    META_FILE,
    REVIEWS_FILE,
    TRUTH_DIR,
    TRUTH_ITEMS,
    PhotoWorldConfig,
    generate_photo_world,
)
from cscnn.data.photos import CATEGORIES, PHOTOS, STATISTICS, load_photo
from cscnn.data.truth import read_attributes
from cscnn.errors import ConfigError, DataContractError

TINY = PhotoWorldConfig(items=200, users=150, days=4, seed=3)


@pytest.fixture(scope="module")
def photo_world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("photo-world")
    summary = photo_amazon(TINY, root / "raw", import_to=root / "world", neg_ratio=4)
    return {"raw": root / "raw", "world": root / "world", "summary": summary}


def _raw_bytes(raw: Path) -> dict[str, bytes]:
    files = [raw / REVIEWS_FILE, raw / META_FILE, *sorted((raw / IMAGES_DIR).iterdir())]
    return {path.name: path.read_bytes() for path in files}


def test_every_photograph_loads_from_the_installed_wheels() -> None:
    assert {source for spec in CATEGORIES for source in spec.sources} <= set(PHOTOS)
    for name in PHOTOS:
        pixels = load_photo(name)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3, name
        assert min(pixels.shape[:2]) >= 100 and pixels.std() > 5, name


def test_same_seed_same_files_other_seed_other_files(photo_world: dict, tmp_path: Path) -> None:
    again = generate_photo_world(TINY, tmp_path / "again")
    assert again == json.loads((photo_world["raw"] / MARKER).read_text())
    assert _raw_bytes(tmp_path / "again") == _raw_bytes(photo_world["raw"])
    other = PhotoWorldConfig(**{**TINY.__dict__, "seed": TINY.seed + 1})
    generate_photo_world(other, tmp_path / "other")
    assert (tmp_path / "other" / REVIEWS_FILE).read_bytes() != (photo_world["raw"] / REVIEWS_FILE).read_bytes()


def test_the_files_import_cleanly_through_import_amazon(photo_world: dict) -> None:
    world = open_world(photo_world["world"])
    impressions = world.impressions()  # validated against the contract and the tables
    report = json.loads((photo_world["world"] / REPORT_FILE).read_text())
    counts = report["counts"]
    generated = photo_world["summary"]["generated"]
    assert report["skipped_items"] == [] and counts["reviews_dropped"] == 0 and counts["duplicate_reviews"] == 0
    assert counts["positives"] == generated["reviews"] == impressions["click"].sum()
    assert counts["items"] == generated["reviewed_items"] and counts["categories"] == len(CATEGORIES)
    assert counts["days"] == TINY.days and counts["negatives_short"] == 0
    assert {spec.name for spec in CATEGORIES} == set(world.items["category"])
    # cold start: items launched after the first day first show up in the log later
    items = pd.read_parquet(photo_world["raw"] / TRUTH_DIR / TRUTH_ITEMS).set_index("asin")
    first_day = impressions.groupby("item_id")["ts"].min().dt.strftime("%Y-%m-%d")
    late = first_day[items.loc[first_day.index, "launch_day"].to_numpy() > 0]
    assert len(late) > 10 and (late > report["first_day"]).all()


def test_truth_aligns_with_the_impressions_and_ranks_them(photo_world: dict) -> None:
    world = photo_world["world"]
    days = sorted(path.stem for path in (world / schema.IMPRESSIONS_DIR).glob("*.parquet"))
    clicks, scores = [], []
    for day in days:
        impressions = pd.read_parquet(schema.impressions_path(world, day))
        truth = pd.read_parquet(probability_path(world, day))
        assert list(truth.columns) == ["probability"] and truth["probability"].dtype == np.float64
        assert len(truth) == len(impressions)
        assert ((truth["probability"] > 0) & (truth["probability"] <= 1)).all()
        clicks.append(impressions["click"].to_numpy())
        scores.append(truth["probability"].to_numpy())
    click, probability = np.concatenate(clicks), np.concatenate(scores)
    auc = roc_auc_score(click, probability)
    assert auc > 0.72, auc  # about 0.8 on this world; a misaligned file is near 0.5
    assert roc_auc_score(click, np.roll(probability, 1)) < 0.6
    assert abs(probability.mean() - click.mean()) < 0.04, (probability.mean(), click.mean())
    oracle = photo_world["summary"]["oracle"]
    assert oracle["auc"] == pytest.approx(auc, abs=1e-4) and oracle["cold_start_rows"] > 0


def test_the_imported_world_holds_every_item_true_statistics(photo_world: dict) -> None:
    world = photo_world["world"]
    items = pd.read_parquet(world / schema.ITEMS_FILE)
    truth = read_attributes(world, items["item_id"])
    assert truth.names == STATISTICS and truth.values.shape == (len(items), len(STATISTICS))
    raw = pd.read_parquet(photo_world["raw"] / "truth" / "items.parquet").set_index("asin")
    assert np.allclose(truth.visual, raw.loc[items["item_id"], "visual"].to_numpy())


def test_shared_photos_cut_every_category_from_the_same_pool_deterministically(tmp_path: Path) -> None:
    cfg = PhotoWorldConfig(**{**TINY.__dict__, "items": 400, "shared_photos": True})
    summary = generate_photo_world(cfg, tmp_path / "a")
    assert summary["config"]["shared_photos"] is True
    items = pd.read_parquet(tmp_path / "a" / "truth" / "items.parquet")
    pool = {name for spec in CATEGORIES for name in spec.sources}
    assert set(items["source"]) == pool
    for category, sources in items.groupby("category")["source"]:
        own = set(CATEGORIES[category].sources)
        assert len(set(sources) - own) >= len(pool) // 3, category  # not its own photographs only
    generate_photo_world(cfg, tmp_path / "b")
    assert _raw_bytes(tmp_path / "a") == _raw_bytes(tmp_path / "b")
    default = pd.read_parquet(photo_world_default_items(tmp_path))
    assert all(set(s) <= set(CATEGORIES[c].sources) for c, s in default.groupby("category")["source"])


def photo_world_default_items(tmp_path: Path) -> Path:
    generate_photo_world(TINY, tmp_path / "default")
    return tmp_path / "default" / "truth" / "items.parquet"


def test_truth_is_the_same_for_any_row_order(photo_world: dict) -> None:
    world = open_world(photo_world["world"])
    impressions = world.impressions()
    forward = impression_probability(photo_world["raw"], impressions)
    order = np.random.default_rng(0).permutation(len(impressions))
    shuffled = impression_probability(photo_world["raw"], impressions.iloc[order].reset_index(drop=True))
    np.testing.assert_allclose(shuffled, forward[order])


def test_buyers_react_to_the_same_statistic_with_opposite_signs_across_categories(photo_world: dict) -> None:
    items = pd.read_parquet(photo_world["raw"] / TRUTH_DIR / TRUTH_ITEMS)
    by_statistic: dict[str, dict[int, float]] = {}
    for c, spec in enumerate(CATEGORIES):
        members = items[items["category"] == c]
        # the item's part of the review utility (all but the user's category affinity) against the raw statistic
        effect = np.corrcoef(members[spec.statistic], members["utility"])[0, 1]
        assert np.sign(effect) == spec.sign and abs(effect) > 0.4, (spec.name, effect)
        by_statistic.setdefault(spec.statistic, {})[spec.sign] = effect
    opposite = [name for name, signs in by_statistic.items() if set(signs) == {1, -1}]
    assert {"brightness", "saturation", "edges", "top_light"} <= set(opposite)
    assert set(STATISTICS) == set(by_statistic)


def test_reviews_follow_the_taste(photo_world: dict) -> None:
    """Observed, not only drawn: in each category the reviewed items score higher on the category's taste
    (`visual` = sign x the standardised statistic) than the sampled unclicked ones."""
    items = pd.read_parquet(photo_world["raw"] / TRUTH_DIR / TRUTH_ITEMS).set_index("asin")
    impressions = open_world(photo_world["world"]).impressions()
    shown = items.loc[impressions["item_id"], ["category", "visual"]].assign(click=impressions["click"].to_numpy())
    gaps = shown.groupby(["category", "click"])["visual"].mean().unstack()
    gap = gaps[1] - gaps[0]
    assert (gap > 0.2).sum() >= len(CATEGORIES) - 1, gap.round(3).to_dict()


def test_a_rerun_reuses_the_folder_and_a_changed_config_needs_force(photo_world: dict, tmp_path: Path) -> None:
    first = generate_photo_world(TINY, tmp_path / "raw")
    stamp = (tmp_path / "raw" / REVIEWS_FILE).stat().st_mtime_ns
    assert generate_photo_world(TINY, tmp_path / "raw") == first
    assert (tmp_path / "raw" / REVIEWS_FILE).stat().st_mtime_ns == stamp
    bigger = PhotoWorldConfig(**{**TINY.__dict__, "users": TINY.users + 1})
    with pytest.raises(ConfigError, match="another config"):
        generate_photo_world(bigger, tmp_path / "raw")
    assert generate_photo_world(bigger, tmp_path / "raw", force=True)["counts"]["users"] == TINY.users + 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no photo world"):
        generate_photo_world(TINY, tmp_path / "other")


def test_truth_for_a_world_from_other_data_is_refused(photo_world: dict, tiny_world: Path, tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="not in the photo world"):
        impression_probability(photo_world["raw"], open_world(tiny_world).impressions())
    with pytest.raises(DataContractError, match="no impressions files"):
        write_photo_truth(photo_world["raw"], tmp_path)
    with pytest.raises(DataContractError, match="no photo world here"):
        impression_probability(tmp_path, open_world(tiny_world).impressions())


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--items", "5", "items must be an integer >= 10"),
        ("--users", "0", "users must be an integer >= 1"),
        ("--days", "0", "days must be an integer >= 1"),
        ("--image-size", "8", "image_size must be an integer >= 16"),
        ("--new-item-share", "1.0", "new_item_share must be in"),
        ("--reviews-per-user-day", "0", "reviews_per_user_day must be > 0"),
        ("--start-day", "2014-13-01", "start_day must be a YYYY-MM-DD date"),
        ("--neg-ratio", "0", "neg_ratio must be an integer >= 1"),
    ],
)
def test_bad_options_stop_with_one_line_naming_them(tmp_path: Path, option: str, value: str, message: str) -> None:
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    args = ["data", "photo-amazon", "--out", str(tmp_path / "raw"), "--import-to", str(tmp_path / "world")]
    result = CliRunner().invoke(app, [*args, "--items", "40", "--users", "20", "--days", "2", option, value])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "world").exists()


def test_the_command_generates_imports_and_writes_the_truth(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    args = ["data", "photo-amazon", "--out", str(tmp_path / "raw"), "--import-to", str(tmp_path / "world")]
    result = CliRunner().invoke(app, [*args, "--items", "60", "--users", "40", "--days", "2", "--seed", "5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["imported"]["impressions"] == summary["oracle"]["rows"] > 0
    assert sorted(p.stem for p in (tmp_path / "world" / TRUTH_DIR / "probability").glob("*.parquet")) == sorted(
        summary["oracle"]["rows_per_day"]
    )
    again = CliRunner().invoke(app, [*args, "--items", "60", "--users", "40", "--days", "2", "--seed", "5"])
    assert again.exit_code == 2 and "--force" in again.output  # the world folder is not replaced silently
