"""End to end on the tiny profile: synth -> train -> evaluate -> embed, through the library and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cscnn.data import schema
from cscnn.data.io import open_world, write_table
from cscnn.data.synth import generate_world
from cscnn.entrypoints.cli import app
from cscnn.errors import ModelMismatchError
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.embed import load_table
from cscnn.training.evaluate import evaluate_checkpoint
from cscnn.training.features import encode, feature_frame
from cscnn.training.train import prepare, train

runner = CliRunner()


@pytest.fixture(scope="module")
def world_dir(tiny_with, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "world"
    generate_world(tiny_with().world, path)
    return path


@pytest.fixture(scope="module")
def trained(world_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "cscnn"
    result = runner.invoke(
        app,
        ["train", "--data", str(world_dir), "--profile", "tiny", "--variant", "cscnn", "--out", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_loadable_checkpoint(trained) -> None:
    _model, _encoder, cfg, card = load_checkpoint(trained)
    assert card["variant"] == "cscnn" and cfg.model.variant == "cscnn"
    assert 1 <= card["best_epoch"] <= cfg.train.epochs
    assert len(card["history"]) <= cfg.train.epochs
    assert card["days"]["test"] and card["days"]["val"] and card["days"]["train"]
    assert set(card["days"]["train"]).isdisjoint(card["days"]["test"])


def test_evaluate_and_gate_cli_take_the_pipeline_path(world_dir, trained, tmp_path) -> None:
    args = ["evaluate", "--data", str(world_dir), "--model", str(trained), "--out", str(tmp_path / "e.json")]
    result = runner.invoke(app, [*args, "--state", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert json.loads(result.output) == evaluation
    assert "champion" not in evaluation  # not asked for (--against-champion)
    metrics = evaluation["candidate"]
    assert evaluation["days"] == metrics["days"] == load_checkpoint(trained)[3]["days"]["test"]
    assert 0.0 <= metrics["auc"] <= 1.0 and metrics["logloss"] > 0
    assert metrics["n_cold_start"] > 0, "the tiny world adds new items every day"
    assert set(metrics["per_category_auc"]) == set(open_world(world_dir).items["category"])
    assert metrics["model_fingerprint"] == load_checkpoint(trained)[3]["fingerprint"]

    gate_args = ["gate", "--evaluation", str(tmp_path / "e.json"), "--out", str(tmp_path / "g.json")]
    # the floor at 0: this checks the CLI's path, not how good a 2-epoch model on 1,200 rows is
    result = runner.invoke(app, [*gate_args, "--profile", "tiny", "--set", "gate.auc_floor=0.0"])
    assert result.exit_code == 0, result.output
    decision = json.loads((tmp_path / "g.json").read_text())
    assert decision["passed"] is True and decision["candidate_auc"] == metrics["auc"]
    assert [c["name"] for c in decision["checks"] if c["passed"] is None] == ["auc_change"]  # no champion
    bad = runner.invoke(app, ["gate", "--evaluation", str(tmp_path / "g.json"), "--out", str(tmp_path / "x.json")])
    assert bad.exit_code == 2 and "not an evaluation" in bad.output


def test_embedding_table_scores_equal_the_model(world_dir, trained, tmp_path) -> None:
    result = runner.invoke(
        app, ["embed", "--data", str(world_dir), "--model", str(trained), "--out", str(tmp_path / "t")]
    )
    assert result.exit_code == 0, result.output
    model, encoder, cfg, card = load_checkpoint(trained)
    table = load_table(tmp_path / "t", expected_fingerprint=card["fingerprint"])
    world = open_world(world_dir)
    frame = feature_frame(world, world.impressions(card["days"]["test"]))
    data = encode(frame, encoder)
    vectors, found = table.lookup(frame["item_id"].to_numpy())
    assert found.all()
    from cscnn.training.features import image_bank

    bank = image_bank(world, encoder, cfg.model.image_size)
    batch = data.batch(np.arange(len(data)))
    with torch.no_grad():
        direct = model(batch, bank)["logit"]
        from_table = model.score(batch.sparse, batch.dense, torch.from_numpy(vectors))
    torch.testing.assert_close(from_table, direct, rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelMismatchError, match="rebuild it with `cscnn embed`"):
        load_table(tmp_path / "t", expected_fingerprint="0" * 16)
    category = encoder.categories[1]
    unknown, found = table.lookup(
        ["not-an-item", "not-an-item", items_known := frame["item_id"][0]], [category, "?", "?"]
    )
    assert found.tolist() == [False, False, True]
    np.testing.assert_allclose(unknown[0], table.category_vectors[2])  # row k+1 holds category k (0-based)
    np.testing.assert_allclose(unknown[0], vectors_of_category(table, category), rtol=1e-5)
    np.testing.assert_allclose(unknown[1], table.category_vectors[0])
    np.testing.assert_allclose(unknown[2], table.lookup([items_known])[0][0])


def vectors_of_category(table, category: str) -> np.ndarray:
    return np.asarray(table.vectors)[table.categories == category].mean(axis=0)


def test_same_seed_same_model(tiny_with, world_dir) -> None:
    cfg = tiny_with("model.variant=cnn", "train.epochs=1")
    world = open_world(world_dir)
    a, b = train(world, cfg, progress=False), train(world, cfg, progress=False)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)


def test_unseen_category_at_inference_falls_back(world_dir, trained, tmp_path) -> None:
    """A catalogue category the model never saw evaluates with the mean category prior, not an error."""
    copy = tmp_path / "world"
    shutil.copytree(world_dir, copy)
    items = pd.read_parquet(copy / schema.ITEMS_FILE)
    items.loc[items.index[:5], "category"] = "brand-new-category"
    write_table(items, copy / schema.ITEMS_FILE, schema.ITEMS)
    metrics = evaluate_checkpoint(trained, copy)
    assert "brand-new-category" in metrics["per_category_auc"]
    assert 0.0 <= metrics["auc"] <= 1.0


def test_vocabularies_come_from_training_days_only(world_dir, tiny_config) -> None:
    world = open_world(world_dir)
    prepared = prepare(world, tiny_config)
    train_items = set(world.impressions(prepared.split.train)["item_id"])
    test_frame = world.impressions(prepared.split.test)
    new_items = ~test_frame["item_id"].isin(train_items).to_numpy()
    assert new_items.any()
    test_data = encode(feature_frame(world, test_frame), prepared.encoder)
    assert (test_data.cold == new_items).all()
    assert set(prepared.encoder.vocabs["item_id"]) == train_items
    train_categories = world.items.set_index("item_id").loc[sorted(train_items), "category"]
    assert prepared.encoder.categories == sorted(set(train_categories))


def test_late_fusion_trains_only_on_top_of_a_frozen_cnn(tiny_with, world_dir, monkeypatch) -> None:
    import cscnn.training.train as train_module

    snapshots = {}
    original = train_module.pretrain_backbone

    def pretrain_and_snapshot(model, *args):
        original(model, *args)
        snapshots.update({k: v.clone() for k, v in model.backbone.state_dict().items()})

    monkeypatch.setattr(train_module, "pretrain_backbone", pretrain_and_snapshot)
    result = train(open_world(world_dir), tiny_with("model.variant=late_fusion"), progress=False)
    assert snapshots, "late fusion must pretrain its CNN"
    for name, tensor in result.model.backbone.state_dict().items():
        torch.testing.assert_close(tensor, snapshots[name], rtol=0, atol=0, msg=name)
    assert result.history[-1]["train_loss"] > 0


def test_cli_errors_are_one_clear_line(tmp_path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3  # a data contract error (README "Exit codes"): no world there
    assert "world folder not found" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "train.epochz=3"]
    )
    assert result.exit_code == 2 and "unknown key 'epochz'" in result.output
    assert not (tmp_path / "o").exists()


def test_bad_image_stops_training_before_anything_is_written(world_dir, tmp_path) -> None:
    copy = tmp_path / "world"
    shutil.copytree(world_dir, copy)
    items = pd.read_parquet(copy / schema.ITEMS_FILE)
    (copy / schema.IMAGES_DIR / items["image"][3]).write_bytes(b"not an image")
    result = runner.invoke(
        app, ["train", "--data", str(copy), "--profile", "tiny", "--out", str(tmp_path / "ckpt"), "--quiet"]
    )
    assert result.exit_code == 3  # the data breaks its contract
    assert "cannot decode image" in result.output and "items.parquet row 3" in result.output
    assert not (tmp_path / "ckpt").exists()
