"""Pictures logged with every candidate: ROC curve, per-category AUC (attention: `attention_plots`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cscnn.data.io import World
from cscnn.files import write_json
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.features import visual_source
from cscnn.training.scoring import score_days
from cscnn.training.train import select_device


def pyplot():
    """matplotlib without a display (Agg), imported only when a picture is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


ROC_POINTS = 101  # what `points` keeps of the curve: enough to draw it, small enough for a KFP UI artifact


def roc_points(model_dir: Path, world: World, days: list[str]) -> tuple[dict[str, list[float]], float | None]:
    """The checkpoint's ROC over `days`: ({"fpr", "tpr", "threshold"}, at most ROC_POINTS points, thresholds
    within [0, 1]; empty lists with one class only) and the AUC (None with one class)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    model, encoder, cfg, _ = load_checkpoint(model_dir)
    bank = visual_source(world, encoder, cfg)
    scores = score_days(model, world, days, encoder, bank, select_device("cpu"), cfg.train.chunk_rows)
    labels, probs = scores["label"], scores["prob"]
    if len(set(labels)) != 2:
        return {"fpr": [], "tpr": [], "threshold": []}, None
    fpr, tpr, threshold = roc_curve(labels, probs)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).round().astype(int))
    curve = {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "threshold": np.clip(threshold[keep], 0.0, 1.0).tolist(),  # sklearn's first threshold is inf
    }
    return curve, float(roc_auc_score(labels, probs))


def roc_rows(curve: dict[str, list[float]]) -> list[dict[str, float]]:
    """The curve as one row per point, the shape `dvc plots` reads (dvc.yaml's `roc` plot)."""
    return [dict(zip(curve, point, strict=True)) for point in zip(*curve.values(), strict=True)]


def roc_curve_png(model_dir: Path, world: World, day: str, out: Path, points: Path | None = None) -> Path:
    """The candidate's ROC on `day` as a picture; with `points`, its curve as JSON too (`roc_points`)."""
    curve, auc = roc_points(model_dir, world, [day])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if auc is not None:
        ax.plot(curve["fpr"], curve["tpr"], label=f"AUC {auc:.4f}")
    if points is not None:
        write_json(points, curve)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC on {day}")
    ax.legend(loc="lower right")
    return save_figure(fig, plt, out)


def category_auc_png(candidate: dict, champion: dict | None, out: Path) -> Path:
    plt = pyplot()
    names = sorted(candidate["per_category_auc"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(names) + 2), 3.5))
    cand = [candidate["per_category_auc"][n] or np.nan for n in names]
    ax.bar(x - 0.2, cand, width=0.4, label="candidate")
    if champion is not None:
        champ = [champion["per_category_auc"].get(n) or np.nan for n in names]
        ax.bar(x + 0.2, champ, width=0.4, label="champion")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set(ylabel="AUC", ylim=(0.4, 1.0), title="AUC per category (eval day)")
    ax.legend()
    return save_figure(fig, plt, out)


def save_figure(fig, plt, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
