"""Scoring days of impressions with a model: predictions chunk by chunk, and the metrics the gate reads.

Memory: one chunk of rows at a time, plus the scores of the scored days (labels, probabilities, slices).
Under several workers each rank scores its share of every chunk and the scores are gathered, so every
rank computes the same metrics (and makes the same early-stopping decision).
"""

from __future__ import annotations

import numpy as np
import torch

from cscnn.data.io import World
from cscnn.models import CTRModel
from cscnn.models.ctr import ImageSource
from cscnn.training import distributed
from cscnn.training.features import EncodedSplit, FeatureEncoder
from cscnn.training.metrics import summarize
from cscnn.training.stream import encoded_chunks

PREDICT_BATCH = 2048  # rows scored at a time; the CNN sees their unique images (memory: like a training step)


@torch.no_grad()
def predict(model: CTRModel, data: EncodedSplit, bank: ImageSource | None, device: torch.device) -> np.ndarray:
    model.eval()
    preds = [model(b.to(device), bank)["y_pred"].cpu().numpy() for b in data.batches(PREDICT_BATCH)]
    return np.concatenate(preds) if preds else np.empty(0, dtype=np.float32)


def score_days(
    model: CTRModel,
    world: World,
    days: list[str],
    encoder: FeatureEncoder,
    bank: ImageSource | None,
    device: torch.device,
    chunk_rows: int,
    ranks: distributed.Ranks | None = None,
) -> dict[str, np.ndarray]:
    """`label`, `prob`, `category` and `cold` of every impression of `days` (rank order under workers)."""
    ranks = ranks or distributed.Ranks()
    parts: dict[str, list[np.ndarray]] = {"label": [], "prob": [], "category": [], "cold": []}
    for chunk in encoded_chunks(world, days, encoder, chunk_rows):
        mine = chunk.take(distributed.local_slice(len(chunk), ranks))
        parts["prob"].append(predict(model, mine, bank, device))
        for key in ("label", "category", "cold"):
            parts[key].append(getattr(mine, key))
    local = {key: np.concatenate(values) if values else np.empty(0) for key, values in parts.items()}
    return distributed.gather(local, ranks)


def evaluate_days(
    model: CTRModel,
    world: World,
    days: list[str],
    encoder: FeatureEncoder,
    bank: ImageSource | None,
    device: torch.device,
    chunk_rows: int,
    ranks: distributed.Ranks | None = None,
) -> dict:
    """AUC, log loss, per-category and cold-start AUC of the model on `days` (`metrics.summarize`)."""
    scores = score_days(model, world, days, encoder, bank, device, chunk_rows, ranks)
    return summarize(scores["label"], scores["prob"], scores["category"], scores["cold"])
