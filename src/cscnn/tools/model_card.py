"""What a registered version tells its reader in MLflow: the model card (its description), the data it was
trained on as the run's input dataset (the DVC data version), and the learning curve (metrics per epoch)."""

from __future__ import annotations

import numpy as np
from mlflow.data.dataset_source import DatasetSource

MODEL_DESCRIPTION = (
    "CSCNN click-through-rate model of the daily loop (category-specific attention in the image CNN). Each "
    "version is a pyfunc: a frame of impressions (the sparse features as strings, `price`, `image` as the "
    "base64 of the image file) in, click probabilities out. Alias `champion`: the version that serves (with the "
    "embedding table its tag `embeddings` names); `challenger`: the latest candidate. Each version's "
    "description is its model card."
)


class DVCDataSource(DatasetSource):
    """Where a run's data comes from: the data registry's commit, its data in the DVC remote."""

    def __init__(self, remote: str, commit: str) -> None:
        self.remote, self.commit = remote, commit

    @staticmethod
    def _get_source_type() -> str:
        return "dvc"

    def load(self, **kwargs):
        raise NotImplementedError("restore a data version with cscnn.tools.versioning.restore")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source) -> DVCDataSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, str]:
        return {"remote": self.remote, "commit": self.commit}

    @classmethod
    def from_dict(cls, source_dict: dict) -> DVCDataSource:
        return cls(source_dict["remote"], source_dict["commit"])


def data_version_dataset(data_version: str, remote: str):
    """The run's input dataset: named by the data version tag (`<day>@<commit>`), digest the commit."""
    from mlflow.data.meta_dataset import MetaDataset

    commit = data_version.rpartition("@")[2]
    return MetaDataset(DVCDataSource(remote, commit), name=data_version, digest=commit)


def version_card(card: dict, data_version: str, metrics: dict, decision: dict | None) -> str:
    """The version's description in Markdown: data version, variant, recipe, metrics and the gate's decision."""
    recipe = ", ".join(
        f"{k}={round(card[k], 4) if isinstance(card[k], float) else card[k]}"
        for k in ("best_epoch", "val_auc", "train_seconds", "workers")
        if k in card
    )
    lines = [
        f"**Model** `{card.get('fingerprint')}`, variant `{card.get('variant')}`, trained on data version "
        f"`{data_version}` (days {card.get('days', {})}).",
        f"**Recipe**: {recipe}; the run's params hold the whole config.",
        "**Metrics** on the held-out day: "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float) and not k.startswith("auc_c")),
    ]
    if decision is not None:
        verdict = "pass" if decision.get("passed") else "fail"
        reasons = "; ".join(decision.get("reasons", [])) or "every check passed"
        lines.append(f"**Gate** {verdict}: {reasons}.")
    return "\n\n".join(lines)


def log_history(history: list[dict]) -> None:
    """Per-epoch metrics with their epoch as step: the learning curve in MLflow's UI."""
    import mlflow

    for record in history:
        values = {k: float(v) for k, v in record.items() if k != "epoch" and isinstance(v, int | float)}
        mlflow.log_metrics({f"epoch_{k}": v for k, v in values.items() if np.isfinite(v)}, step=int(record["epoch"]))


def describe(mlflow_client, name: str, version: str, description: str) -> None:
    """The registered model's description (once) and this version's card."""
    if not mlflow_client.get_registered_model(name).description:
        mlflow_client.update_registered_model(name, description=MODEL_DESCRIPTION)
    mlflow_client.update_model_version(name, version, description=description)
