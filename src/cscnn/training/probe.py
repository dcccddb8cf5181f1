"""Extraction or use? A linear probe of a trained model's visual vector against the world's true attributes.

A model whose image path adds little to the CTR network either does not *see* the attribute that drives
clicks (the visual vector does not hold it) or does not *use* it (the vector holds it, the CTR network
ignores it). The probe separates the two: ridge regressions from the visual vectors of the items the model
was trained on to their true attributes (`cscnn.data.truth`), scored by R² on the items it never saw in
training (cold-start items: held out for the model and for the probe). `visual_r2` probes the item's true
visual term, which depends on its category, with one linear map per category (the visual vector times a
one-hot category): what a CTR network that crosses the vector with the category could read off it.
"""

from __future__ import annotations

import numpy as np
import torch

from cscnn.data.io import World
from cscnn.data.truth import read_attributes
from cscnn.models import CTRModel
from cscnn.models.ctr import ImageSource
from cscnn.training.features import FeatureEncoder

RIDGE = 1.0  # on standardised inputs: a light penalty, so that 100s of features on 1,000s of items stay stable
MIN_ITEMS = 8  # fewer held-out (or fitting) items than this: no probe (R² of a handful is noise)
PROBE_BATCH = 512


def ridge_r2(fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> np.ndarray:
    """R² on (test_x, test_y) of ridge regressions fitted on (fit_x, fit_y), one per column of y. Inputs are
    standardised with the fitting rows' statistics; an intercept is fitted, not penalised."""
    mean, spread = fit_x.mean(axis=0), fit_x.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    a, b = (fit_x - mean) / spread, (test_x - mean) / spread
    y_mean = fit_y.mean(axis=0)
    weights = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ (fit_y - y_mean))
    residual = ((test_y - y_mean - b @ weights) ** 2).sum(axis=0)
    total = ((test_y - test_y.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.nan)


@torch.no_grad()
def _visual_vectors(model: CTRModel, source: ImageSource, device: torch.device) -> np.ndarray:
    model.eval()
    parts = []
    for rows in torch.arange(len(source)).split(PROBE_BATCH):
        inputs, categories = source.fetch(rows)
        parts.append(model.encode_images(inputs.to(device), categories.to(device))["visual"].float().cpu().numpy())
    return np.concatenate(parts)


def probe(
    model: CTRModel, source: ImageSource, world: World, encoder: FeatureEncoder, device: torch.device
) -> dict | None:
    """{"attributes_r2": {name: R²}, "mean_attribute_r2", "visual_r2", "fit_items", "held_out_items"} for a
    model with a visual part on a world that knows its attributes; None otherwise (or too few items)."""
    if not model.uses_images:
        return None
    try:
        truth = read_attributes(world.root, world.items["item_id"])
    except Exception:  # real data: no truth to probe against
        return None
    seen = world.items["item_id"].isin(encoder.vocabs["item_id"]).to_numpy()
    if seen.sum() < MIN_ITEMS or (~seen).sum() < MIN_ITEMS:
        return None
    vectors = _visual_vectors(model, source, device).astype(np.float64)
    attributes = truth.values.astype(np.float64)
    r2 = ridge_r2(vectors[seen], attributes[seen], vectors[~seen], attributes[~seen])
    categories = encoder.category_index(world.items["category"])
    one_hot = np.eye(len(encoder.categories) + 1)[categories]
    crossed = np.concatenate([one_hot, (vectors[:, :, None] * one_hot[:, None, :]).reshape(len(vectors), -1)], 1)
    visual = truth.visual[:, None]
    visual_r2 = ridge_r2(crossed[seen], visual[seen], crossed[~seen], visual[~seen])[0]
    return {
        "attributes_r2": {name: float(v) for name, v in zip(truth.names, r2, strict=True)},
        "mean_attribute_r2": float(np.nanmean(r2)),
        "visual_r2": float(visual_r2),
        "fit_items": int(seen.sum()),
        "held_out_items": int((~seen).sum()),
    }
