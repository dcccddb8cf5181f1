"""The learner's ceiling (issue 19): the diagnostic `attributes` variant, the worlds' true attributes and the
linear probe, on the tiny world. Deterministic and fast."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cscnn.config import load_config
from cscnn.daily import tasks
from cscnn.data.io import open_world
from cscnn.data.truth import ATTRIBUTES_FILE, read_attributes
from cscnn.errors import ConfigError, CSCNNError, DataContractError
from cscnn.training.embed import export_table
from cscnn.training.probe import probe, ridge_r2
from cscnn.training.train import prepare_for, train


def test_a_synthetic_world_writes_every_item_true_attributes(tiny_world: Path) -> None:
    world = open_world(tiny_world)
    truth = read_attributes(tiny_world, world.items["item_id"])
    assert truth.names == ("hue", "size", "brightness", "stripes", "height")
    assert truth.values.shape == (len(world.items), 5) and truth.values.dtype == np.float32
    assert np.allclose(truth.values.mean(axis=0), 0, atol=1e-5) and np.allclose(truth.values.std(axis=0), 1, atol=1e-4)
    items = pd.read_parquet(tiny_world / "truth/items.parquet").set_index("item_id").loc[world.items["item_id"]]
    assert np.allclose(truth.visual, items["visual_score"].to_numpy())  # the click model's visual term


def test_a_world_without_truth_is_refused_by_name(tiny_with, tiny_world: Path, tmp_path: Path) -> None:
    copy = tmp_path / "real"
    shutil.copytree(tiny_world, copy)
    (copy / ATTRIBUTES_FILE).unlink()
    cfg = tiny_with("model.variant=attributes")
    with pytest.raises(DataContractError, match=r"attributes\.parquet: not found"):
        train(open_world(copy), cfg, progress=False)


def _train_attributes(world: Path, out: Path | None = None):
    cfg = load_config("tiny", overrides=["model.variant=attributes"])
    return train(open_world(world), cfg, out=out, progress=False)


def test_the_attributes_variant_is_deterministic_and_loads_back(tiny_world: Path, tmp_path: Path) -> None:
    first, second = _train_attributes(tiny_world, tmp_path / "m"), _train_attributes(tiny_world)
    assert first.card["val_auc"] == second.card["val_auc"]
    assert first.card["encoder"]["attributes"] == ["hue", "size", "brightness", "stripes", "height"]
    again = first.prepared.source_for(_variant("attributes"))
    assert again is first.prepared.attributes and first.prepared.bank is None  # no image is ever decoded
    from cscnn.training.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(tmp_path / "m", tiny_world, device="cpu")
    assert metrics["variant"] == "attributes" and 0 <= metrics["auc"] <= 1
    with pytest.raises(CSCNNError, match="diagnostic"):  # nothing a served ad could look up
        export_table(tmp_path / "m", tiny_world, tmp_path / "table")


def _variant(name: str):
    from cscnn.variants import get_variant

    return get_variant(name)


def test_the_daily_loop_refuses_the_diagnostic_variant() -> None:
    with pytest.raises(ConfigError, match="diagnostic"):
        tasks.context("tiny", ["model.variant=attributes"], "")


def test_one_preparation_serves_image_and_attribute_variants(tiny_world: Path, tiny_config) -> None:
    world = open_world(tiny_world)
    prepared = prepare_for(world, tiny_config, ["no_image", "attributes", "cscnn"])
    assert prepared.bank is not None and prepared.attributes is not None
    assert prepared.source_for(_variant("no_image")) is None
    values, categories = prepared.attributes.fetch(torch.tensor([0, 3]))
    assert values.shape == (2, 5) and categories.tolist() == prepared.bank.fetch(torch.tensor([0, 3]))[1].tolist()


def test_ridge_r2_is_one_for_a_linear_target_and_near_zero_for_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = np.stack([x @ np.arange(6.0), rng.normal(size=400)], axis=1)
    r2 = ridge_r2(x[:300], y[:300], x[300:], y[300:])
    assert r2[0] > 0.999 and abs(r2[1]) < 0.1


def test_the_probe_reads_the_attributes_back_from_the_ceiling_and_is_deterministic(tiny_world: Path) -> None:
    result = _train_attributes(tiny_world)
    world = open_world(tiny_world)
    args = (result.model, result.prepared.attributes, world, result.prepared.encoder, torch.device("cpu"))
    first, second = probe(*args), probe(*args)
    assert first == second and first is not None
    assert first["fit_items"] + first["held_out_items"] == len(world.items) and first["held_out_items"] >= 8
    assert set(first["attributes_r2"]) == {"hue", "size", "brightness", "stripes", "height"}
    assert all(np.isfinite(v) for v in first["attributes_r2"].values())
