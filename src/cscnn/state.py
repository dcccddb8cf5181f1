"""Where the daily loop keeps its local state, and how each place is pointed elsewhere.

Everything the embedded default needs lives under one folder, `.state/` in the project (override with
`CSCNN_STATE`). Each tool can be moved to a real server by configuration, never by code:

    mlflow.db, mlartifacts/   MLflow tracking + registry (set MLFLOW_TRACKING_URI for a server)
    data-registry/            git + DVC repository that versions each day of data
    dvc-remote/               its default DVC remote (set CSCNN_DVC_REMOTE for object storage)
    kfp-local/<day>/          kfp.local's pipeline root: per-day working files (validation, checkpoints, gate)
    days/<day>.json           the status of each day (validated, rejected, promoted, ...) for operators
    airflow/, bentoml/        AIRFLOW_HOME and BENTOML_HOME of the embedded default
KFP_HOST, when set, makes the DAG submit the pipeline to that Kubeflow Pipelines host instead of kfp.local.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class State:
    root: Path

    @classmethod
    def from_env(cls, root: Path | str | None = None) -> State:
        chosen = root or os.environ.get("CSCNN_STATE") or Path.cwd() / ".state"
        return cls(Path(chosen).resolve())

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def data_registry(self) -> Path:
        return self.root / "data-registry"

    @property
    def registry_world(self) -> Path:
        """The versioned world (days that passed validation): what candidates train and evaluate on."""
        return self.data_registry / "world"

    @property
    def dvc_remote(self) -> str:
        return os.environ.get("CSCNN_DVC_REMOTE") or str(self.root / "dvc-remote")

    def day_status_file(self, day: str) -> Path:
        return self.root / "days" / f"{day}.json"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def model_cache(self) -> Path:
        return self.root / "model-cache"
