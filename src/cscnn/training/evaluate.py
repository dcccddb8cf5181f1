"""Evaluate a checkpoint on held-out days of a world: AUC, log loss, per-category and cold-start AUC."""

from __future__ import annotations

from pathlib import Path

from cscnn.data.io import open_world
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.features import encode, feature_frame, image_bank
from cscnn.training.train import evaluate_split, select_device


def evaluate_checkpoint(model_dir: Path, world_dir: Path, days: list[str] | None = None, device: str = "auto") -> dict:
    """Metrics of the checkpoint on `days` (default: the test days it was trained with)."""
    model, encoder, cfg, card = load_checkpoint(model_dir)
    world = open_world(world_dir)
    days = days or card["days"]["test"]
    data = encode(feature_frame(world, world.impressions(days)), encoder)
    bank = image_bank(world, encoder, cfg.model.image_size) if model.uses_images else None
    torch_device = select_device(device)
    metrics = evaluate_split(model.to(torch_device), data, bank.to(torch_device) if bank else None, torch_device)
    return {"variant": card["variant"], "model_fingerprint": card["fingerprint"], "days": days, **metrics}
