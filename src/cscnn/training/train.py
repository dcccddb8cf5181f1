"""End-to-end training: streamed data, per-batch image dedup, synchronous data parallelism (DDP) when
launched with several workers, early stopping on validation AUC, and checkpoints (rank 0 writes them)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cscnn.config import Config
from cscnn.data.io import World
from cscnn.errors import ConfigError
from cscnn.files import write_json
from cscnn.models import Batch, CTRModel
from cscnn.models.ctr import ImageSource
from cscnn.training import distributed
from cscnn.training.allocator import reuse_freed_memory
from cscnn.training.checkpoint import build_model, read_card, save_checkpoint
from cscnn.training.diagnostics import signal_scale
from cscnn.training.encoded_days import EncodedDays, encode_days
from cscnn.training.features import (
    AttributeBank,
    CachedImages,
    DaySplit,
    FeatureEncoder,
    StoredImages,
    image_source,
    split_days,
)
from cscnn.training.metrics import auc
from cscnn.training.prefetch import ahead, depth_for, gather_images
from cscnn.training.recipe import ItemIdDropout, WeightAverage, lr_factor, param_groups, set_lr
from cscnn.training.scoring import score_days
from cscnn.training.stream import count_rows, fit_encoder, shuffled_batches
from cscnn.variants import Variant, get_variant

HISTORY_FILE = "history.json"  # next to the checkpoint: the per-epoch history (also in the card's `history`)


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
    """What a run needs from a world before its first step: the day split, the vocabularies (one streaming
    pass over the training days, which also encodes them once: `encoded`) and the image source (the decoded
    store, or a bounded cache); the diagnostic `attributes` variant reads `attributes` instead of images."""

    world: World
    split: DaySplit
    encoder: FeatureEncoder
    bank: StoredImages | CachedImages | None  # None for the no-image variant: its images are never decoded
    attributes: AttributeBank | None = None
    encoded: EncodedDays | None = None  # the training days encoded once (`train.encode_once`)

    def source_for(self, variant: Variant) -> ImageSource | None:
        """What `variant`'s visual part reads from this split (None: it has none)."""
        if not variant.uses_images:
            return None
        return self.attributes if variant.visual_input == "attributes" else self.bank


def prepare(world: World, cfg: Config, images: bool = True, attributes: bool = False) -> Prepared:
    """`images`: open the image source (`image_source`); `attributes`: read the world's true attributes (the
    diagnostic variant; the encoder then records their names)."""
    split = split_days(world.days, cfg.train.val_days, cfg.train.test_days, cfg.train.window_days)
    encoded = None
    if cfg.train.encode_once:
        encoder, encoded = encode_days(world, split.train, cfg.train.chunk_rows)
    else:
        encoder = fit_encoder(world, split.train, cfg.train.chunk_rows)
    bank = image_source(world, encoder, cfg) if images else None
    truth = None
    if attributes:
        truth = AttributeBank(world, encoder)
        encoder.attributes = truth.names
    return Prepared(world, split, encoder, bank, truth, encoded)


def prepare_for(world: World, cfg: Config, variants: list[str]) -> Prepared:
    """One preparation that serves every variant in `variants` (`cscnn compare` shares it)."""
    specs = [get_variant(v) for v in variants]
    return prepare(
        world,
        cfg,
        images=any(s.uses_images and s.visual_input == "image" for s in specs),
        attributes=any(s.diagnostic for s in specs),
    )


def pretrain_backbone(
    model: CTRModel, prepared: Prepared, cfg: Config, device: torch.device, rng: np.random.Generator
) -> None:
    """Late fusion's stand-in for ImageNet features: train the CNN to classify the training items' images by
    category, then freeze it. Only its projection and the CTR network learn from clicks. Items first seen
    after the training days are left out, so nothing is learned from the future. Every rank does the same
    (same seed, same rows), so the frozen CNN is the same everywhere."""
    assert model.backbone is not None and prepared.bank is not None
    items = prepared.world.items["item_id"]
    rows = np.flatnonzero(items.isin(prepared.encoder.vocabs["item_id"]).to_numpy())
    head = torch.nn.Linear(cfg.model.visual_dim, len(prepared.encoder.categories) + 1).to(device)
    optimizer = torch.optim.Adam(list(model.backbone.parameters()) + list(head.parameters()), lr=cfg.train.lr)
    for _ in range(cfg.model.pretrain_epochs):
        for batch_rows in torch.from_numpy(rng.permutation(rows)).split(256):
            images, categories = prepared.bank.fetch(batch_rows)
            images, categories = images.to(device), categories.to(device)
            loss = torch.nn.functional.cross_entropy(head(model.backbone(images, categories)["visual"]), categories)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.freeze_backbone()


def train_step(
    model: torch.nn.Module,
    batch: Batch,
    bank: ImageSource | None,
    optimizer: torch.optim.Optimizer,
    dedup: bool,
    global_rows: int | None = None,
    world_size: int = 1,
) -> tuple[float, int]:
    """One optimisation step on log loss; returns this batch's mean loss and how many images went through
    the CNN. With workers, `batch` is this rank's share of a global batch of `global_rows` rows: the loss is
    the share's sum scaled so that DDP's gradient average is the gradient of the global batch's mean loss."""
    outputs = model(batch, bank, dedup=dedup)
    losses = torch.nn.functional.binary_cross_entropy_with_logits(outputs["logit"], batch.label, reduction="none")
    scale = world_size / global_rows if global_rows else 1.0 / max(1, len(batch.label))
    optimizer.zero_grad()
    (losses.sum() * scale).backward()
    optimizer.step()
    return float(losses.detach().mean()) if len(losses) else 0.0, outputs.get("unique_images", 0)


def make_optimizer(model: CTRModel, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(param_groups(model, cfg.train), lr=cfg.train.lr)


@dataclass
class TrainResult:
    model: CTRModel
    prepared: Prepared
    history: list[dict] = field(default_factory=list)
    signal_at_start: dict | None = None  # cscnn.training.diagnostics.signal_scale before the first step
    best_epoch: int = 0
    wall_seconds: float = 0.0
    card: dict = field(default_factory=dict)


@dataclass
class Run:
    """One training run's moving parts, shared by the epoch loop and its helpers."""

    cfg: Config
    prepared: Prepared
    model: CTRModel
    engine: torch.nn.Module  # the model, or its DDP wrapper under several workers
    optimizer: torch.optim.Optimizer
    device: torch.device
    ranks: distributed.Ranks
    rng: np.random.Generator
    total_steps: int = 0  # optimisation steps of `train.epochs` epochs (the cosine schedule's length)
    steps: int = 0  # optimisation steps taken so far (the learning-rate warm-up and schedule read it)
    dropout: ItemIdDropout | None = None
    average: WeightAverage | None = None  # `train.ema_decay` > 0

    @property
    def source(self) -> ImageSource | None:
        """What this run's visual part reads: the image cache, the true attributes, or nothing."""
        return self.prepared.source_for(get_variant(self.cfg.model.variant))


def _warm_up(run: Run) -> None:
    """`train.warmup_steps`: the learning rate rises linearly to `train.lr` over the first steps, the same
    for every variant (attention modules and priors start untrained, and Adam's first steps are large); then
    `train.lr_schedule`."""
    run.steps += 1
    set_lr(run.optimizer, lr_factor(run.cfg.train, run.steps, run.total_steps))


def assembled_batches(run: Run) -> Iterator[tuple[int, Batch, ImageSource | None]]:
    """One epoch's steps as (global batch rows, this rank's share, the images its step reads), assembled in
    `train.prefetch_batches` ahead of the step by a background thread (`cscnn.training.prefetch`). The same
    seeded generators run in the same order as inline, so the data order does not depend on the setting."""
    cfg, prepared = run.cfg, run.prepared
    pin = run.device.type == "cuda"
    source = run.source

    def assemble() -> Iterator[tuple[int, Batch, ImageSource | None]]:
        batches = shuffled_batches(
            prepared.world,
            prepared.split.train,
            prepared.encoder,
            cfg.train.batch_size,
            cfg.train.shuffle_buffer_rows,
            cfg.train.chunk_rows,
            run.rng,
            prepared.encoded,
        )
        for global_batch in batches:
            global_batch = run.dropout(global_batch) if run.dropout else global_batch
            mine = global_batch.take(distributed.local_slice(len(global_batch), run.ranks)).to_batch()
            images = gather_images(mine, source, cfg.train.dedup, pin) if source is not None else None
            yield len(global_batch), mine.pin_memory() if pin else mine, images

    return ahead(assemble(), depth_for(cfg.train.prefetch_batches, run.device))


def run_epoch(run: Run, desc: str, progress: bool) -> dict:
    """One pass over the training days in a seeded, buffer-shuffled order of global batches."""
    cfg, prepared = run.cfg, run.prepared
    run.engine.train()
    started, losses, unique_images, rows = time.perf_counter(), [], 0, 0
    total = -(-count_rows(prepared.world, prepared.split.train) // cfg.train.batch_size)
    bar = tqdm(
        assembled_batches(run), total=total, desc=desc, disable=not progress or not run.ranks.is_main, leave=False
    )
    for global_rows, mine, images in bar:
        _warm_up(run)
        loss, n_images = train_step(
            run.engine,
            mine.to(run.device, non_blocking=True),
            images,
            run.optimizer,
            cfg.train.dedup,
            global_rows,
            run.ranks.world_size,
        )
        if run.average is not None:
            run.average.update()
        losses.append(loss)
        unique_images += n_images
        rows += global_rows
        bar.set_postfix(loss=f"{loss:.4f}")
    return {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "seconds": time.perf_counter() - started,
        "impressions": rows,
        "cnn_images": unique_images,
    }


def validation_auc(run: Run) -> float:
    val = run.prepared.split.val
    scores = score_days(
        run.model, run.prepared.world, val, run.prepared.encoder, run.source, run.device,
        run.cfg.train.chunk_rows, run.ranks,
    )  # fmt: skip
    return auc(scores["label"], scores["prob"]) or 0.0


def train(
    world: World, cfg: Config, out: Path | None = None, progress: bool = True, prepared: Prepared | None = None
) -> TrainResult:
    """Train `cfg.model.variant` on `world`; write a checkpoint to `out` (atomically, rank 0) when given.

    Runs as one process, or as one rank of several when launched by torchrun / Kubeflow Trainer.
    `prepared` lets several runs on the same split (`cscnn compare`) share the vocabularies and image cache.
    Early stopping: the best epoch by validation AUC is kept; `train.patience` epochs without a better one stop.
    """
    started = time.perf_counter()
    variant = get_variant(cfg.model.variant)
    chosen = select_device(cfg.train.device)
    with distributed.process_group(cfg.train, chosen) as ranks:
        device = distributed.device_for(ranks, chosen)
        torch.set_num_threads(_threads(cfg, ranks))
        if cfg.train.reuse_freed_memory:
            reuse_freed_memory()
        rng = seed_everything(cfg.train.seed)
        prepared = prepared or prepare_for(world, cfg, [cfg.model.variant])
        model = build_model(cfg, prepared.encoder).to(device)
        if variant.pretrain:
            pretrain_backbone(model, prepared, cfg, device, rng)
        engine = _ddp(model, device) if ranks.distributed else model
        run = Run(cfg, prepared, model, engine, make_optimizer(model, cfg), device, ranks, rng)
        run.total_steps = cfg.train.epochs * -(-count_rows(world, prepared.split.train) // cfg.train.batch_size)
        run.dropout = ItemIdDropout(cfg.train)
        run.average = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
        result = _fit(run, progress)
        result.wall_seconds = time.perf_counter() - started
        if out is not None:
            result.card = _save(run, result, world, out)
    return result


def _fit(run: Run, progress: bool) -> TrainResult:
    cfg, result = run.cfg, TrainResult(model=run.model, prepared=run.prepared)
    best_auc, best_state, stale = -1.0, copy.deepcopy(run.model.state_dict()), 0
    if run.source is not None:
        result.signal_at_start = signal_scale(run.model, run.source, run.device)
    for epoch in range(1, cfg.train.epochs + 1):
        record = run_epoch(run, f"{cfg.model.variant} epoch {epoch}/{cfg.train.epochs}", progress)
        if run.average is not None:  # judge (and keep) the averaged weights
            run.average.swap()
        record = {"epoch": epoch, **record, "val_auc": validation_auc(run)}  # the same on every rank
        if run.source is not None:
            record["signal"] = signal_scale(run.model, run.source, run.device)
        improved = record["val_auc"] > best_auc
        if improved:
            best_auc, best_state, stale = record["val_auc"], copy.deepcopy(run.model.state_dict()), 0
            result.best_epoch = epoch
        if run.average is not None:
            run.average.swap()
        result.history.append(record)
        if progress and run.ranks.is_main:
            tqdm.write(
                f"epoch {epoch}: train_loss={record['train_loss']:.4f} val_auc={record['val_auc']:.4f} "
                f"({record['seconds']:.1f}s)"
            )
        if not improved:
            stale += 1
            if stale >= cfg.train.patience:
                break
    run.model.load_state_dict(best_state)
    run.model.eval()
    result.card = {"val_auc": best_auc}
    return result


def _save(run: Run, result: TrainResult, world: World, out: Path) -> dict:
    """Rank 0 writes the checkpoint; every rank returns the same card once it is there."""
    extra = {
        "world": str(world.root),
        "days": run.prepared.split.to_dict(),
        "best_epoch": result.best_epoch,
        "val_auc": result.card["val_auc"],
        "history": result.history,
        "signal_at_start": result.signal_at_start,
        "train_seconds": result.wall_seconds,
        "workers": run.ranks.world_size,
    }
    card = {}
    if run.ranks.is_main:
        card = save_checkpoint(out, run.model.cpu(), run.prepared.encoder, run.cfg, extra=extra)
        # The learning curve alone, a list of per-epoch records: what `dvc plots` reads (dvc.yaml `plots:`).
        write_json(out / HISTORY_FILE, result.history)
        run.model.to(run.device)
    distributed.barrier(run.ranks)
    if not run.ranks.is_main:
        card = read_card(out)
    return card


def _ddp(model: CTRModel, device: torch.device) -> torch.nn.Module:
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _threads(cfg: Config, ranks: distributed.Ranks) -> int:
    """`train.num_threads`, else the cores shared evenly by the workers on this machine."""
    if cfg.train.num_threads:
        return cfg.train.num_threads
    local_workers = int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world_size))
    return max(1, (os.cpu_count() or 1) // max(1, local_workers))
