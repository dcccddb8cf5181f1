"""The other synthetic worlds (`world.visual_model`: many_directions, regions) and every world's oracle ceiling
(truth/probability/<day>.parquet and the oracle AUCs in world.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cscnn.config import WorldConfig, load_config
from cscnn.data import synth
from cscnn.data.io import open_world
from cscnn.data.synth import render, visual
from cscnn.errors import ConfigError

NEW_MODELS = ("many_directions", "regions")


def tiny(**changes) -> WorldConfig:
    return dataclasses.replace(load_config("tiny").world, **changes)


def tiny_of(model: str, **changes) -> WorldConfig:
    """A tiny world of this visual model, with enough categories that they can differ."""
    return tiny(**({"visual_model": model, "n_categories": 5} | changes))


@pytest.fixture(scope="module", params=["attributes", *NEW_MODELS])
def any_world(request, tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp(request.param) / "world"
    synth.generate_world(tiny_of(request.param), path)
    return request.param, path


def read_summary(root: Path) -> dict:
    return json.loads((root / synth.WORLD_FILE).read_text())


def probability_path(root: Path, day: str) -> Path:
    return root / synth.TRUTH_DIR / synth.PROBABILITY_DIR / f"{day}.parquet"


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- configuration and profiles ------------------------------------------------------------------------------


def test_an_unknown_visual_model_is_a_config_error_naming_the_field(tiny_with, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"world\.visual_model='nope'.*many_directions"):
        tiny_with("world.visual_model=nope")
    with pytest.raises(ConfigError, match=r"world\.visual_model"):
        synth.generate_world(tiny(visual_model="nope"), tmp_path / "world")
    assert not (tmp_path / "world").exists()


def test_profiles_of_the_new_worlds() -> None:
    capacity, regions, small = load_config("capacity"), load_config("regions"), load_config("small")
    assert small.world == WorldConfig()  # the default world is still the default
    assert (capacity.world.visual_model, capacity.world.n_categories, capacity.model.visual_dim) == (
        "many_directions",
        40,
        2,
    )
    assert (regions.world.visual_model, regions.world.n_categories) == ("regions", 10)
    for cfg in (capacity, regions):
        assert (cfg.world.impressions_per_day, cfg.world.n_days) == (small.world.impressions_per_day, 8)


# --- determinism ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", NEW_MODELS)
def test_same_config_and_seed_give_the_same_bytes(model: str, tmp_path: Path) -> None:
    synth.generate_world(tiny_of(model), tmp_path / "a")
    synth.generate_world(tiny_of(model), tmp_path / "b")
    synth.generate_world(tiny_of(model, seed=1), tmp_path / "c")
    first, again, other = (folder_bytes(tmp_path / name) for name in "abc")
    assert len(first) > 50 and first == again
    assert first.keys() == other.keys()
    assert first["impressions/2026-01-01.parquet"] != other["impressions/2026-01-01.parquet"]
    assert first["images/i000000.png"] != other["images/i000000.png"]


# --- the oracle ceiling --------------------------------------------------------------------------------------


def test_truth_probability_has_one_row_per_impression_in_order(any_world: tuple[str, Path]) -> None:
    model, root = any_world
    summary = read_summary(root)
    all_days = open_world(root).impressions()
    clicks, probabilities = [], []
    for stats in summary["days"]:
        impressions = all_days[all_days["day"] == stats["day"]]
        truth = pd.read_parquet(probability_path(root, stats["day"]))
        assert list(truth.columns) == ["probability"] and truth["probability"].dtype == np.float64
        assert len(truth) == len(impressions) == stats["rows"]
        assert truth["probability"].between(0.0, 1.0).all()
        # the same order: the AUC of these probabilities against the day's clicks is the recorded oracle
        assert roc_auc_score(impressions["click"], truth["probability"]) == pytest.approx(stats["oracle_auc"])
        clicks.append(impressions["click"].to_numpy())
        probabilities.append(truth["probability"].to_numpy())
    click, probability = np.concatenate(clicks), np.concatenate(probabilities)
    assert abs(probability.mean() - click.mean()) < 0.03, model  # 2,400 rows: the sd of the CTR is about 0.007
    assert roc_auc_score(click, probability) == pytest.approx(summary["totals"]["oracle_auc"])
    assert 0.6 < summary["totals"]["oracle_auc"] < 1.0


def test_cold_start_oracle_of_the_last_day(any_world: tuple[str, Path]) -> None:
    _, root = any_world
    summary = read_summary(root)
    impressions = open_world(root).impressions()
    last = summary["days"][-1]["day"]
    seen = set(impressions.loc[impressions["day"] < last, "item_id"])
    day = impressions[impressions["day"] == last].reset_index(drop=True)
    cold = ~day["item_id"].isin(seen).to_numpy()
    probability = pd.read_parquet(probability_path(root, last))["probability"].to_numpy()
    expected = roc_auc_score(day["click"][cold], probability[cold])
    assert summary["days"][-1]["oracle_auc_cold"] == pytest.approx(expected)
    assert summary["totals"]["oracle_auc_cold_last_day"] == pytest.approx(expected)
    assert summary["totals"]["oracle_auc_last_day"] == summary["days"][-1]["oracle_auc"]
    assert 0.5 < summary["days"][-1]["oracle_auc_cold_without_visual"] < 1.0


def test_a_broken_day_keeps_the_truth_of_the_rows_as_generated(tmp_path: Path) -> None:
    broken = "2026-01-03"
    synth.generate_world(tiny(broken_days=[broken]), tmp_path / "broken")
    synth.generate_world(tiny(), tmp_path / "clean")
    truth = pd.read_parquet(probability_path(tmp_path / "broken", broken))
    pd.testing.assert_frame_equal(truth, pd.read_parquet(probability_path(tmp_path / "clean", broken)))
    damaged = pd.read_parquet(tmp_path / "broken" / "impressions" / f"{broken}.parquet")
    clean = pd.read_parquet(tmp_path / "clean" / "impressions" / f"{broken}.parquet")
    assert len(damaged) > len(truth) == len(clean)  # duplicates appended after the generated rows
    head = damaged.iloc[: len(truth)]
    assert (head["request_id"].to_numpy() == clean["request_id"].to_numpy()).all()
    assert (head["item_id"].to_numpy() == clean["item_id"].to_numpy()).all()
    assert (head["click"] == 2).sum() > 0  # damaged labels, described by the same truth rows


# --- the mechanisms ------------------------------------------------------------------------------------------


def scores(model: str, attributes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return visual.features(model, attributes) @ weights


@pytest.mark.parametrize("model", NEW_MODELS)
def test_the_recorded_visual_score_is_the_category_weights_times_the_features(model: str, tmp_path: Path) -> None:
    synth.generate_world(tiny_of(model), tmp_path / "w")
    summary = read_summary(tmp_path / "w")
    truth = summary["ground_truth"]
    items = pd.read_parquet(tmp_path / "w" / synth.TRUTH_DIR / "items.parquet")
    assert truth["visual_model"] == model and truth["features"] == list(visual.feature_names(model))
    weights = {c: np.array([v["visual_weights"][f] for f in truth["features"]]) for c, v in truth["categories"].items()}
    attributes = items[list(visual.attribute_names(model))].to_numpy()
    expected = np.einsum("nk,nk->n", visual.features(model, attributes), np.stack(list(items["category"].map(weights))))
    np.testing.assert_allclose(items["visual_score"], expected, atol=2e-3)  # world.json rounds weights to 1e-4
    assert abs(items["visual_score"].std() - 1.0) < 0.25  # unit variance by construction
    rows = np.stack(list(weights.values()))
    cosine = np.abs(rows @ rows.T)[~np.eye(len(rows), dtype=bool)]
    assert cosine.max() < 0.99, "every category has a direction of its own"


def test_many_directions_is_a_capacity_bottleneck() -> None:
    """Forty categories' directions in eight attributes: no 2-d summary shared by all keeps most of them."""
    weights = visual.draw_weights("many_directions", 40, np.random.default_rng(0))
    assert weights.shape == (40, 8)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=1), 1.0)
    share = visual.category_blind_share(weights)
    assert share[1] < 0.6 and share[-1] == pytest.approx(1.0)
    z = visual.features("many_directions", np.random.default_rng(1).random((4, 8)))
    assert not np.allclose(z @ weights[0], z @ weights[1])  # the same items rank differently in two categories


def render_one(attrs: dict[str, float], names: tuple[str, ...], clutter: int = 0, seed: int = 0) -> np.ndarray:
    """One 64 px image without pixel noise; the same seed places it the same way."""
    rng = np.random.default_rng(seed)
    style = synth.CategoryStyle(
        shape=np.array([0]), background=np.array([[0.5, 0.5, 0.5]]), texture_freq=np.ones(1), texture_angle=np.zeros(1)
    )
    row = np.array([[attrs.get(name, 0.5) for name in names]])
    return render.render_images(row, np.array([0]), style, 64, clutter, 0.0, rng, names).astype(int)


@pytest.mark.parametrize("attribute", ["saturation", "stripe_angle", "aspect"])
def test_each_extra_attribute_changes_the_picture(attribute: str) -> None:
    names = visual.attribute_names("many_directions")
    low, high = render_one({attribute: 0.0}, names), render_one({attribute: 1.0}, names)
    assert (np.abs(low - high).sum(axis=-1) > 30).mean() > 0.02


def region_weights() -> tuple[np.ndarray, dict[str, int]]:
    weights = visual.draw_weights("regions", 10, np.random.default_rng(0))
    return weights, {visual.region_of(row): c for c, row in enumerate(weights)}


def test_regions_every_region_is_read_by_two_categories_that_disagree() -> None:
    weights, _ = region_weights()
    regions = [visual.region_of(row) for row in weights]
    assert sorted(set(regions)) == sorted(visual.REGIONS)
    for region in visual.REGIONS:
        a, b = (weights[c] for c in range(10) if regions[c] == region)
        np.testing.assert_allclose(a, -b)


def test_regions_only_the_own_badge_moves_a_badge_category() -> None:
    weights, by_region = region_weights()
    names = visual.attribute_names("regions")
    base = {name: 0.5 for name in names} | {f"{c}_badge": 0.0 for c in synth.CORNERS}
    corner = "top_right"
    own, other = weights[by_region[corner]], weights[by_region["bottom_left"]]
    texture = weights[by_region["texture"]]

    def score(w: np.ndarray, **changes: float) -> float:
        return float(scores("regions", np.array([[(base | changes)[n] for n in names]]), w)[0])

    with_badge = {f"{corner}_badge": 1.0, f"{corner}_badge_hue": 0.9}
    assert score(own, **with_badge) != pytest.approx(score(own))  # the badge's presence counts
    assert score(own, **with_badge) != pytest.approx(score(own, **with_badge | {f"{corner}_badge_hue": 0.1}))
    assert score(own, stripes=0.9) == pytest.approx(score(own))  # the stripes do not
    assert score(own, **{"bottom_left_badge": 1.0}) == pytest.approx(score(own))  # another corner does not
    assert score(other, **with_badge) == pytest.approx(score(other))
    assert score(texture, **with_badge) == pytest.approx(score(texture))
    assert score(texture, stripes=0.9) != pytest.approx(score(texture))


def test_regions_the_badge_is_drawn_in_its_corner_and_clutter_lands_anywhere() -> None:
    names = visual.attribute_names("regions")
    plain = render_one({f"{c}_badge": 0.0 for c in synth.CORNERS}, names)
    badge = render_one({f"{c}_badge": float(c == "top_right") for c in synth.CORNERS}, names)
    changed = np.abs(plain - badge)[0].sum(axis=-1) > 0
    rows, cols = np.nonzero(changed)
    assert changed.sum() > 50 and rows.max() < 32 and cols.min() >= 32  # only the top-right quarter
    cluttered = render_one({f"{c}_badge": 0.0 for c in synth.CORNERS}, names, clutter=6)
    assert (np.abs(cluttered - plain).sum(axis=-1) > 0).sum() > 50


def test_regions_clutter_changes_images_but_not_a_single_probability(tmp_path: Path) -> None:
    synth.generate_world(tiny_of("regions"), tmp_path / "a")
    synth.generate_world(tiny_of("regions", clutter=8), tmp_path / "b")
    a, b = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
    assert a["images/i000000.png"] != b["images/i000000.png"]
    truth = [k for k in a if k.startswith(f"{synth.TRUTH_DIR}/") or k.startswith("impressions/")]
    assert len(truth) > 8 and all(a[k] == b[k] for k in truth)


def fit_logistic(features: np.ndarray, label: np.ndarray, steps: int = 25) -> np.ndarray:
    """Newton-Raphson logistic regression with an intercept; returns the feature weights."""
    design = np.column_stack([np.ones(len(features)), features])
    weights = np.zeros(design.shape[1])
    for _ in range(steps):
        prob = 1.0 / (1.0 + np.exp(-design @ weights))
        hessian = design.T @ (design * (prob * (1 - prob))[:, None]) + 1e-6 * np.eye(design.shape[1])
        weights += np.linalg.solve(hessian, design.T @ (label - prob))
    return weights[1:]


@pytest.mark.parametrize("model", NEW_MODELS)
def test_clicks_recover_each_categorys_own_direction(model: str, tmp_path: Path) -> None:
    """Per category, clicks regressed on the true features point along that category's weights, not another's."""
    out = tmp_path / "signal"
    synth.generate_world(tiny_of(model, n_categories=4, n_items=900, n_days=2, impressions_per_day=12_000), out)
    summary = read_summary(out)
    truth = summary["ground_truth"]["categories"]
    first = summary["days"][0]  # every row is cold on the first day: there the images are all an oracle has
    assert first["oracle_auc_cold"] == first["oracle_auc"] > first["oracle_auc_cold_without_visual"] + 0.03
    latent = pd.read_parquet(out / synth.TRUTH_DIR / "items.parquet")
    rows = open_world(out).impressions().merge(latent, on="item_id")
    features = summary["ground_truth"]["features"]
    true = {c: np.array([v["visual_weights"][f] for f in features]) for c, v in truth.items()}
    for category, group in rows.groupby("category"):
        f = visual.features(model, group[list(visual.attribute_names(model))].to_numpy())
        fitted = fit_logistic(f, group["click"].to_numpy())
        cosine = {c: fitted @ w / np.linalg.norm(fitted) for c, w in true.items()}
        assert cosine[category] > 0.8, (category, cosine)
        assert cosine[category] == max(cosine.values()), (category, cosine)
