"""End-to-end training with per-batch image dedup, early stopping on validation AUC, and checkpoints."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cscnn.config import Config
from cscnn.data.io import World
from cscnn.errors import ConfigError
from cscnn.models import Batch, CTRModel, ImageBank
from cscnn.training.checkpoint import build_model, save_checkpoint
from cscnn.training.features import (
    DaySplit,
    EncodedSplit,
    FeatureEncoder,
    encode,
    feature_frame,
    image_bank,
    split_days,
)
from cscnn.training.metrics import auc, summarize
from cscnn.variants import get_variant

PREDICT_BATCH = 8192


def select_device(name: str) -> torch.device:
    """`auto`: CUDA when present, else CPU. Asking for CUDA on a machine without it is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available here; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclass
class Prepared:
    """Everything a run needs from a world: the split, fitted encoder, encoded splits and the image bank."""

    split: DaySplit
    encoder: FeatureEncoder
    data: dict[str, EncodedSplit]
    bank: ImageBank | None  # None for the no-image variant: its images are never decoded


def prepare(world: World, cfg: Config, images: bool = True) -> Prepared:
    """Split by day, fit vocabularies on the training days, encode, and decode the images if asked."""
    split = split_days(world.days, cfg.train.val_days, cfg.train.test_days, cfg.train.window_days)
    frames = {name: feature_frame(world, world.impressions(days)) for name, days in split.to_dict().items()}
    encoder = FeatureEncoder.fit(frames["train"])
    data = {name: encode(frame, encoder) for name, frame in frames.items()}
    bank = image_bank(world, encoder, cfg.model.image_size) if images else None
    return Prepared(split, encoder, data, bank)


@torch.no_grad()
def predict(model: CTRModel, data: EncodedSplit, bank: ImageBank | None, device: torch.device) -> np.ndarray:
    model.eval()
    preds = [model(b.to(device), bank)["y_pred"].cpu().numpy() for b in data.batches(PREDICT_BATCH)]
    return np.concatenate(preds) if preds else np.empty(0, dtype=np.float32)


def evaluate_split(model: CTRModel, data: EncodedSplit, bank: ImageBank | None, device: torch.device) -> dict:
    probs = predict(model, data, bank, device)
    return summarize(data.label, probs, data.category, data.cold)


def pretrain_backbone(
    model: CTRModel, bank: ImageBank, rows: np.ndarray, cfg: Config, device: torch.device, rng: np.random.Generator
) -> None:
    """Late fusion's stand-in for ImageNet features: train the CNN to classify the training items' images
    (`rows` of the bank) by category, then freeze it. Only its projection and the CTR network learn from
    clicks. Items of later days are left out so that nothing is learned from the future."""
    assert model.backbone is not None
    head = torch.nn.Linear(cfg.model.visual_dim, int(bank.categories.max()) + 1).to(device)
    params = list(model.backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
    for _ in range(cfg.model.pretrain_epochs):
        order = torch.from_numpy(rng.permutation(rows)).to(device)
        for batch_rows in order.split(256):
            logits = head(model.backbone(bank.images[batch_rows], bank.categories[batch_rows])["visual"])
            loss = torch.nn.functional.cross_entropy(logits, bank.categories[batch_rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.freeze_backbone()


def train_step(
    model: CTRModel, batch: Batch, bank: ImageBank | None, optimizer: torch.optim.Optimizer, dedup: bool
) -> tuple[float, int]:
    """One optimisation step on log loss; returns the loss and how many images went through the CNN."""
    outputs = model(batch, bank, dedup=dedup)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(outputs["logit"], batch.label)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), outputs.get("unique_images", 0)


def make_optimizer(model: CTRModel, cfg: Config) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(trainable, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


@dataclass
class TrainResult:
    model: CTRModel
    prepared: Prepared
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    wall_seconds: float = 0.0
    card: dict = field(default_factory=dict)


def run_epoch(
    model: CTRModel,
    data: EncodedSplit,
    bank: ImageBank | None,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    rng: np.random.Generator,
    device: torch.device,
    desc: str,
    progress: bool,
) -> dict:
    """One pass over the training rows in a seeded order; returns the epoch's loss, time and CNN work."""
    model.train()
    started, losses, unique_images = time.perf_counter(), [], 0
    n_batches = -(-len(data) // cfg.train.batch_size)
    bar = tqdm(data.batches(cfg.train.batch_size, rng), total=n_batches, desc=desc, disable=not progress, leave=False)
    for batch in bar:
        loss, n_images = train_step(model, batch.to(device), bank, optimizer, cfg.train.dedup)
        losses.append(loss)
        unique_images += n_images
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return {
        "train_loss": float(np.mean(losses)),
        "seconds": time.perf_counter() - started,
        "impressions": len(data),
        "cnn_images": unique_images,
    }


def train(
    world: World, cfg: Config, out: Path | None = None, progress: bool = True, prepared: Prepared | None = None
) -> TrainResult:
    """Train `cfg.model.variant` on `world`; write a checkpoint to `out` (atomically) when given.

    `prepared` lets several runs on the same split (`cscnn compare`) read and decode the world once.
    Early stopping: the best epoch by validation AUC is kept; `train.patience` epochs without a better one stop.
    """
    started = time.perf_counter()
    torch.set_num_threads(cfg.train.num_threads or os.cpu_count() or 1)
    rng = seed_everything(cfg.train.seed)
    device = select_device(cfg.train.device)
    variant = get_variant(cfg.model.variant)
    prepared = prepared or prepare(world, cfg, images=variant.uses_images)
    bank = prepared.bank.to(device) if variant.uses_images and prepared.bank is not None else None
    model = build_model(cfg, prepared.encoder).to(device)
    if variant.pretrain:
        pretrain_backbone(model, bank, np.unique(prepared.data["train"].item_row), cfg, device, rng)
    optimizer = make_optimizer(model, cfg)

    result = TrainResult(model=model, prepared=prepared)
    best_auc, best_state, stale = -1.0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, cfg.train.epochs + 1):
        desc = f"{cfg.model.variant} epoch {epoch}/{cfg.train.epochs}"
        record = run_epoch(model, prepared.data["train"], bank, optimizer, cfg, rng, device, desc, progress)
        val = prepared.data["val"]
        record = {"epoch": epoch, **record, "val_auc": auc(val.label, predict(model, val, bank, device)) or 0.0}
        result.history.append(record)
        if progress:
            tqdm.write(
                f"epoch {epoch}: train_loss={record['train_loss']:.4f} val_auc={record['val_auc']:.4f} "
                f"({record['seconds']:.1f}s)"
            )
        if record["val_auc"] > best_auc:
            best_auc, best_state, stale, result.best_epoch = (
                record["val_auc"],
                copy.deepcopy(model.state_dict()),
                0,
                epoch,
            )
        else:
            stale += 1
            if stale >= cfg.train.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    result.wall_seconds = time.perf_counter() - started
    if out is not None:
        extra = {
            "world": str(world.root),
            "days": prepared.split.to_dict(),
            "best_epoch": result.best_epoch,
            "val_auc": best_auc,
            "history": result.history,
            "train_seconds": result.wall_seconds,
        }
        result.card = save_checkpoint(out, model.cpu(), prepared.encoder, cfg, extra=extra)
        model.to(device)
    return result
