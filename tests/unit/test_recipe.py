"""The training recipe's levers (`cscnn.training.recipe`): schedule, per-part learning rates, item-id dropout,
weight averaging. Each is exact at its default and deterministic when on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.training.checkpoint import build_model
from cscnn.training.features import EncodedSplit, FeatureEncoder
from cscnn.training.recipe import ITEM_COLUMN, ItemIdDropout, WeightAverage, lr_factor, param_groups
from cscnn.training.train import train


def _train_cfg(*overrides: str):
    return load_config("tiny", overrides=list(overrides)).train


def test_warm_up_raises_the_learning_rate_linearly_then_leaves_it() -> None:
    cfg = _train_cfg("train.warmup_steps=4")
    assert [lr_factor(cfg, step, 100) for step in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, None]
    assert lr_factor(_train_cfg(), 1, 100) is None  # the default schedule never touches the rates


def test_cosine_falls_to_zero_over_the_run_after_the_warm_up() -> None:
    cfg = _train_cfg("train.lr_schedule=cosine", "train.warmup_steps=10")
    assert lr_factor(cfg, 5, 110) == 0.5 and lr_factor(cfg, 10, 110) == 1.0
    assert lr_factor(cfg, 60, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(cfg, 110, 110) == pytest.approx(0.0, abs=1e-12)


def _encoder() -> FeatureEncoder:
    from cscnn.data import schema

    return FeatureEncoder(vocabs={n: [f"{n}{i}" for i in range(5)] for n in schema.SPARSE_FEATURES}, categories=["a"])


def test_the_visual_part_gets_its_own_learning_rate_and_decay(tiny_with) -> None:
    cfg = tiny_with("train.cnn_lr_scale=0.25", "train.cnn_weight_decay=1e-4")
    model = build_model(cfg, _encoder())
    ctr, visual = param_groups(model, cfg.train)
    assert ctr["lr"] == cfg.train.lr and visual["lr"] == cfg.train.lr * 0.25 and visual["weight_decay"] == 1e-4
    assert {id(p) for p in visual["params"]} == {id(p) for p in model.backbone.parameters()}
    assert len(ctr["params"]) + len(visual["params"]) == len(list(model.parameters()))
    no_image = build_model(tiny_with("model.variant=no_image"), _encoder())
    assert len(param_groups(no_image, cfg.train)) == 1


def _split(n: int) -> EncodedSplit:
    sparse = np.arange(1, n * 10 + 1, dtype=np.int64).reshape(n, 10) % 7 + 1
    return EncodedSplit(sparse, np.zeros((n, 2), np.float32), np.arange(n), np.zeros(n, np.float32),
                        np.array(["a"] * n, dtype=object), np.zeros(n, bool))  # fmt: skip


def test_item_id_dropout_hides_that_share_of_ids_only_the_same_way_every_run() -> None:
    batch = _split(20_000)
    first = ItemIdDropout(_train_cfg("train.item_id_dropout=0.3"))(batch)
    again = ItemIdDropout(_train_cfg("train.item_id_dropout=0.3"))(batch)
    hidden = first.sparse[:, ITEM_COLUMN] == 0
    assert abs(hidden.mean() - 0.3) < 0.02 and np.array_equal(first.sparse, again.sparse)
    others = np.delete(np.arange(first.sparse.shape[1]), ITEM_COLUMN)
    assert np.array_equal(first.sparse[:, others], batch.sparse[:, others])
    assert (batch.sparse[:, ITEM_COLUMN] > 0).all()  # the input batch is left as it was
    assert ItemIdDropout(_train_cfg("train.item_id_dropout=0"))(batch) is batch


def test_the_weight_average_follows_the_weights_and_swaps_back() -> None:
    layer = torch.nn.Linear(2, 1)
    average = WeightAverage(layer, decay=0.5)  # the first update's ramp, 2/11, is below 0.5: it counts
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(2.0)
    average.update()
    torch.testing.assert_close(average.state_dict()["weight"], start + 2.0 * 9 / 11)
    average.update()  # ramp 3/12 < 0.5
    torch.testing.assert_close(average.state_dict()["weight"], start + 2.0 - 0.25 * 2.0 * 2 / 11)
    average.swap()
    swapped = average.state_dict()["weight"]
    torch.testing.assert_close(swapped, start + 2.0)
    average.swap()
    torch.testing.assert_close(layer.weight.detach(), start + 2.0)
    torch.testing.assert_close(average.state_dict()["weight"], start + 2.0 - 0.25 * 2.0 * 2 / 11)


def test_the_weight_average_decay_ramps_to_its_setting() -> None:
    layer = torch.nn.Linear(1, 1)
    average = WeightAverage(layer, decay=0.5)
    start = layer.weight.detach().clone()
    for _ in range(30):  # by now the ramp exceeds 0.5: the set decay applies
        average.update()
    with torch.no_grad():
        layer.weight.add_(2.0)
    average.update()
    torch.testing.assert_close(average.state_dict()["weight"], start + 1.0)  # halfway


def test_every_lever_on_trains_deterministically(tiny_with, tiny_world: Path) -> None:
    levers = ["train.lr_schedule=cosine", "train.cnn_lr_scale=0.5", "train.cnn_weight_decay=1e-5",
              "train.item_id_dropout=0.2", "train.ema_decay=0.9", "model.conv_norm=group"]  # fmt: skip
    runs = [train(open_world(tiny_world), tiny_with(*levers), progress=False) for _ in range(2)]
    assert runs[0].card["val_auc"] == runs[1].card["val_auc"]
    for (name, a), (_, b) in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
