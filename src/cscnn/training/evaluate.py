"""Evaluate a checkpoint on held-out days of a world: AUC, log loss, per-category and cold-start AUC."""

from __future__ import annotations

from pathlib import Path

from cscnn.data.io import open_world
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.features import visual_source
from cscnn.training.scoring import evaluate_days
from cscnn.training.train import select_device


def evaluate_checkpoint(model_dir: Path, world_dir: Path, days: list[str] | None = None, device: str = "auto") -> dict:
    """Metrics of the checkpoint on `days` (default: the test days it was trained with), read chunk by chunk."""
    model, encoder, cfg, card = load_checkpoint(model_dir)
    world = open_world(world_dir)
    days = days or card["days"]["test"]
    bank = visual_source(world, encoder, cfg)
    torch_device = select_device(device)
    metrics = evaluate_days(model.to(torch_device), world, days, encoder, bank, torch_device, cfg.train.chunk_rows)
    return {"variant": card["variant"], "model_fingerprint": card["fingerprint"], "days": days, **metrics}
