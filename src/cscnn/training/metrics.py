"""Offline metrics: AUC (rank statistic with tied ranks averaged), log loss, and their slices."""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present (it is undefined then)."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def summarize(labels: np.ndarray, probs: np.ndarray, categories: np.ndarray, cold: np.ndarray) -> dict:
    """The metrics the gate and the results table use: overall, per category, and on cold-start items."""
    per_category = {
        str(cat): auc(labels[categories == cat], probs[categories == cat]) for cat in sorted(set(categories))
    }
    return {
        "auc": auc(labels, probs),
        "logloss": logloss(labels, probs),
        "n": len(labels),
        "ctr": float(np.mean(labels)),
        "mean_prediction": float(np.mean(probs)),
        "per_category_auc": per_category,
        "per_category_n": {str(cat): int((categories == cat).sum()) for cat in sorted(set(categories))},
        "cold_start_auc": auc(labels[cold], probs[cold]),
        "n_cold_start": int(cold.sum()),
    }
