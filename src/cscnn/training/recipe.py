"""The training recipe's levers beyond plain Adam (docs/model.md, "Raising the image path toward its
ceiling"): the learning-rate schedule, a learning rate and weight decay of the visual part of its own,
item-id dropout, and an exponential moving average of the weights. Each is a `train.*` setting, the same for
every variant; at their defaults none changes a run.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from cscnn.config import TrainConfig
from cscnn.data import schema
from cscnn.models import CTRModel
from cscnn.training.features import EncodedSplit

ITEM_COLUMN = schema.SPARSE_FEATURES.index("item_id")
DROPOUT_STREAM = 17  # the item-id dropout's generator: seed + this, apart from the data order's


def param_groups(model: CTRModel, cfg: TrainConfig) -> list[dict]:
    """The visual part (CNN or attribute encoder, and late fusion's projection) and the rest, each with its
    own learning rate and weight decay (`train.cnn_lr_scale`, `train.cnn_weight_decay` on top of
    `train.weight_decay`). Adam updates each weight on its own, so equal settings train as one group would."""
    visual = [p for part in (model.backbone, model.fusion) if part is not None for p in part.parameters()]
    ids = {id(p) for p in visual}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": [p for p in rest if p.requires_grad], "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    trainable = [p for p in visual if p.requires_grad]
    if trainable:
        groups.append(
            {
                "params": trainable,
                "lr": cfg.lr * cfg.cnn_lr_scale,
                "weight_decay": cfg.weight_decay + cfg.cnn_weight_decay,
            }
        )
    for group in groups:
        group["initial_lr"] = group["lr"]
    return groups


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float | None:
    """The multiplier of every group's learning rate at optimisation step `step` (1-based): the linear warm-up,
    then the schedule. None when neither applies (the rates are never touched)."""
    warmup, cosine = cfg.warmup_steps, cfg.lr_schedule == "cosine"
    if not cosine and not (warmup and step <= warmup + 1):
        return None
    factor = min(1.0, step / warmup) if warmup else 1.0
    if cosine and step > warmup:
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def set_lr(optimizer: torch.optim.Optimizer, factor: float | None) -> None:
    if factor is None:
        return
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


class ItemIdDropout:
    """Hides the item id of a random share of training impressions (index 0, the unknown row every cold-start
    ad gets), so the image path must explain items that the id embedding would otherwise memorise. Drawn
    from its own generator on the *global* batch, before it is split over workers: every worker count sees
    the same masks."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.rate = cfg.item_id_dropout
        self.rng = np.random.default_rng([cfg.seed, DROPOUT_STREAM])

    def __call__(self, batch: EncodedSplit) -> EncodedSplit:
        if not self.rate:
            return batch
        sparse = batch.sparse.copy()
        sparse[self.rng.random(len(sparse)) < self.rate, ITEM_COLUMN] = 0
        return replace(batch, sparse=sparse)


class WeightAverage:
    """An exponential moving average of the weights (`train.ema_decay`), updated after every step; `swapped_in`
    lends the averaged weights to the model for validation, `state_dict` is what a run keeps as its best."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model, self.decay, self.updates = model, decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self) -> None:
        """One step; the decay ramps up as (1 + n) / (10 + n) to `decay`, so the untrained start fades fast."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                if value.dtype.is_floating_point:
                    self.shadow[key].lerp_(value, 1.0 - decay)
                else:
                    self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def swap(self) -> None:
        """Exchange the model's weights and the average (twice: back as they were)."""
        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                held = value.clone()
                value.copy_(self.shadow[key])
                self.shadow[key].copy_(held)
