"""The synthetic world: contract, determinism, cold start, re-run behaviour and a real category-specific signal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cscnn.config import WorldConfig, load_config
from cscnn.data import synth
from cscnn.data.images import load_images
from cscnn.data.io import World, open_world
from cscnn.errors import ConfigError


def tiny(**changes) -> WorldConfig:
    return dataclasses.replace(load_config("tiny").world, **changes)


@pytest.fixture(scope="module")
def world_dir(tiny_world: Path) -> Path:
    """The default tiny world (the session fixture from conftest.py); read-only."""
    return tiny_world


@pytest.fixture(scope="module")
def world(world_dir: Path) -> World:
    return open_world(world_dir)


def read_summary(root: Path) -> dict:
    return json.loads((root / synth.WORLD_FILE).read_text())


def test_world_follows_the_contract(world: World) -> None:
    cfg = tiny()
    impressions = world.impressions()  # validates every day, its dates and its references
    assert len(world.days) == cfg.n_days
    assert world.days[0] == cfg.start_day
    per_day = impressions.groupby("day").size()
    assert (per_day - cfg.impressions_per_day).abs().max() < cfg.candidates_per_request
    pages = impressions.groupby("request_id").agg(
        n=("item_id", "size"), users=("user_id", "nunique"), days=("day", "nunique"), top=("position", "max")
    )
    assert (pages["n"] == cfg.candidates_per_request).all()
    assert (pages[["users", "days"]] == 1).all().all()
    assert (pages["top"] == cfg.candidates_per_request).all()
    assert len(world.users) == cfg.n_users
    assert world.users["user_id"].str.fullmatch(r"u\d{5}").all()
    assert world.items["item_id"].str.fullmatch(r"i\d{6}").all()
    assert world.items["category"].str.fullmatch(r"c\d{2}").all()
    assert world.items["category"].nunique() == cfg.n_categories


def test_images_decode_at_the_configured_size(world: World) -> None:
    images = load_images(world.items, world.images_dir, tiny().image_size)
    assert images.shape == (len(world.items), 3, 32, 32)
    assert images.std() > 20  # drawn content, not a blank canvas


def test_same_seed_same_world_and_other_seed_other_world(tmp_path: Path, world_dir: Path, world: World) -> None:
    synth.generate_world(tiny(), tmp_path / "again")
    again = open_world(tmp_path / "again")
    pd.testing.assert_frame_equal(again.items, world.items)
    pd.testing.assert_frame_equal(again.users, world.users)
    pd.testing.assert_frame_equal(again.impressions(), world.impressions())
    size = tiny().image_size
    np.testing.assert_array_equal(
        load_images(again.items, again.images_dir, size), load_images(world.items, world.images_dir, size)
    )
    other = tmp_path / "other"
    synth.generate_world(tiny(seed=1), other)
    other_world = open_world(other)
    assert not other_world.impressions()["click"].equals(world.impressions()["click"])
    assert not np.array_equal(
        load_images(other_world.items, other_world.images_dir, size), load_images(world.items, world.images_dir, size)
    )


def test_new_items_arrive_and_the_last_day_shows_unseen_items(world: World, world_dir: Path) -> None:
    cfg = tiny()
    impressions = world.impressions()
    assert len(world.items) == cfg.n_items + cfg.new_items_per_day * (cfg.n_days - 1)
    seen_before = set(impressions.loc[impressions["day"] < world.days[-1], "item_id"])
    last = impressions[impressions["day"] == world.days[-1]]
    cold = ~last["item_id"].isin(seen_before)
    assert cold.sum() >= 0.05 * len(last)
    assert last.loc[cold, "item_id"].nunique() == cfg.new_items_per_day
    summary = read_summary(world_dir)
    assert summary["days"][-1]["cold_rows"] == int(cold.sum())
    assert summary["totals"]["cold_rows_last_day"] == int(cold.sum())


def test_click_rate_is_in_a_sane_band(world: World, world_dir: Path) -> None:
    ctr = world.impressions()["click"].mean()
    assert 0.05 < ctr < 0.25
    assert read_summary(world_dir)["totals"]["ctr"] == pytest.approx(ctr)
    by_position = world.impressions().groupby("position")["click"].mean()
    assert by_position.iloc[0] > by_position.iloc[-1]  # the position penalty is there


def test_same_config_is_reused_and_another_config_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "world"
    first = synth.generate_world(tiny(), out)
    stamp = (out / synth.WORLD_FILE).stat().st_mtime_ns
    assert synth.generate_world(tiny(), out) == first
    assert (out / synth.WORLD_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"seed.*force"):
        synth.generate_world(tiny(seed=7), out)
    replaced = synth.generate_world(tiny(seed=7), out, force=True)
    assert replaced["config"]["seed"] == 7
    assert read_summary(out)["config"]["seed"] == 7


def test_a_folder_that_is_not_a_world_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="force"):
        synth.generate_world(tiny(), out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth.world, "_write_truth", broken)
    with pytest.raises(RuntimeError):
        synth.generate_world(tiny(), tmp_path / "world")
    assert list(tmp_path.iterdir()) == []


def test_world_json_describes_the_ground_truth(world: World, world_dir: Path) -> None:
    summary = read_summary(world_dir)
    truth = summary["ground_truth"]
    assert summary["config"] == dataclasses.asdict(tiny())
    assert set(truth["categories"]) == set(world.items["category"])
    for category in truth["categories"].values():
        weights = np.array(list(category["visual_weights"].values()))
        assert np.linalg.norm(weights) == pytest.approx(1.0, abs=1e-3)
        assert category["shape"] in synth.SHAPES
    assert [d["day"] for d in summary["days"]] == world.days
    assert all(0.5 < d["oracle_auc"] < 1.0 for d in summary["days"])


def fit_logistic(features: np.ndarray, label: np.ndarray, steps: int = 25) -> np.ndarray:
    """Newton-Raphson logistic regression with an intercept; returns the feature weights."""
    design = np.column_stack([np.ones(len(features)), features])
    weights = np.zeros(design.shape[1])
    for _ in range(steps):
        prob = 1.0 / (1.0 + np.exp(-design @ weights))
        hessian = design.T @ (design * (prob * (1 - prob))[:, None]) + 1e-6 * np.eye(design.shape[1])
        weights += np.linalg.solve(hessian, design.T @ (label - prob))
    return weights[1:]


def test_the_visual_signal_is_real_and_category_specific(tmp_path: Path) -> None:
    """Clicks regressed on the true attributes recover each category's own weights, not its neighbours'."""
    out = tmp_path / "signal"
    synth.generate_world(tiny(n_items=900, n_days=2, impressions_per_day=6000), out)
    truth = read_summary(out)["ground_truth"]["categories"]
    latent = pd.read_parquet(out / synth.TRUTH_DIR / "items.parquet")
    rows = open_world(out).impressions().merge(latent, on=["item_id"])
    true = {c: np.array([truth[c]["visual_weights"][a] for a in synth.ATTRIBUTES]) for c in truth}
    stacked = np.stack(list(true.values()))
    flips = (stacked.min(axis=0) < -0.3) & (stacked.max(axis=0) > 0.3)
    assert flips.any(), "some attribute should raise clicks in one category and lower them in another"
    for category, group in rows.groupby("category"):
        z = (group[list(synth.ATTRIBUTES)].to_numpy() - 0.5) * np.sqrt(12.0)
        fitted = fit_logistic(z, group["click"].to_numpy())
        cosine = {c: fitted @ w / np.linalg.norm(fitted) for c, w in true.items()}
        assert cosine[category] > 0.8, (category, cosine)
        assert cosine[category] == max(cosine.values()), (category, cosine)


def test_world_from_an_older_generator_is_regenerated(tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config.world
    out = tmp_path / "world"
    synth.generate_world(cfg, out)
    marker = out / "world.json"
    stale = json.loads(marker.read_text()) | {"generator_version": "0-old"}
    marker.write_text(json.dumps(stale))
    summary = synth.generate_world(cfg, out)
    assert summary["generator_version"] != "0-old"
    assert json.loads(marker.read_text())["generator_version"] == summary["generator_version"]


def test_a_world_made_before_a_setting_existed_counts_as_that_settings_default(tmp_path: Path, tiny_config) -> None:
    """world.json of an older generator lacks settings added since (e.g. `visual_model`): they had their
    default then, so the world is regenerated (derived data), not refused as 'another config'."""
    cfg = tiny_config.world
    out = tmp_path / "w"
    synth.generate_world(cfg, out)
    marker = out / synth.WORLD_FILE
    summary = json.loads(marker.read_text())
    del summary["config"]["visual_model"]
    summary["generator_version"] = "0-older"
    marker.write_text(json.dumps(summary))
    regenerated = synth.generate_world(cfg, out)
    assert regenerated["generator_version"] == synth.GENERATOR_VERSION
    other = dataclasses.replace(cfg, visual_model="regions")
    with pytest.raises(ConfigError, match="visual_model"):
        synth.generate_world(other, out)
