"""Where the daily loop keeps its local state, and how each place is pointed elsewhere.

Everything the embedded default needs lives under one folder, `.state/` in the project (override with
`CSCNN_STATE`). Each tool can be moved to a real server by configuration, never by code:

    mlflow.db, mlartifacts/   MLflow tracking + registry (set MLFLOW_TRACKING_URI for a server)
    data-registry/            git + DVC repository that versions each day of data
    dvc-remote/               its default DVC remote (set CSCNN_DVC_REMOTE for object storage)
    kfp-local/<day>/          kfp.local's pipeline root: per-day working files (validation, checkpoints, gate)
    days/<day>.json           the status of each day (validated, rejected, promoted, ...) for operators
                              (CSCNN_STATUS_STORE=mlflow keeps it in the tracking server instead: a cluster)
    defaults.json             the landing folder and profile the local set-up used (`make demo` writes it):
                              what the DAGs take when neither a param nor $CSCNN_LANDING/$CSCNN_PROFILE names one
    airflow/, bentoml/        AIRFLOW_HOME and BENTOML_HOME of the embedded default
    cscnn.lock                held by the run working on this state (`cscnn.locks`); servers/: its package check
KFP_HOST, when set, makes the DAG submit the pipeline to that Kubeflow Pipelines host instead of kfp.local.

On a cluster nothing is handed over through a folder (infra/README.md): `CSCNN_DATA_REGISTRY_REMOTE` names
the data registry's git remote (each step clones it), `CSCNN_DVC_REMOTE` object storage, MLFLOW_TRACKING_URI
the tracking server (models, tables, and with CSCNN_STATUS_STORE=mlflow the day status). With the data
registry remote set and no CSCNN_STATE, every process works in a private scratch folder of its own
(`cluster_mode`), so that nothing one step writes there can be read by another.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cscnn import settings
from cscnn.errors import ConfigError

REGISTRY_REMOTE_ENV = "CSCNN_DATA_REGISTRY_REMOTE"
_scratch: Path | None = None  # this process's private state folder in cluster mode


def cluster_mode() -> bool:
    """The cluster settings are given: the data registry lives in a git remote (infra/README.md)."""
    return bool(settings.read(REGISTRY_REMOTE_ENV))


def check_cluster_settings(env: dict[str, str] | None = None) -> None:
    """In cluster mode the services must be named: without them the tracking store and the DVC remote would be
    files in this process's scratch folder, gone when it exits, while the git remote kept pointing at them."""
    env = dict(os.environ) if env is None else env
    if not settings.read(REGISTRY_REMOTE_ENV, env):
        return
    from cscnn.errors import ConfigError

    missing = []
    if not env.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://", "postgresql", "mysql")):
        missing.append("MLFLOW_TRACKING_URI (the tracking server)")
    remote = settings.read("CSCNN_DVC_REMOTE", env) or ""
    if "://" not in remote:
        missing.append("CSCNN_DVC_REMOTE (object storage, e.g. s3://bucket/dvc)")
    if missing:
        raise ConfigError(
            f"{REGISTRY_REMOTE_ENV} is set (cluster mode) but not {', '.join(missing)}: every step would keep them "
            "in its own scratch folder, lost when it ends (infra/README.md, Cluster mode)"
        )


def handed_over(state: State) -> str:
    """The state folder to hand to other processes (pipeline steps): this one on a machine, none ("") in
    cluster mode without an explicit CSCNN_STATE, so that each step works in a scratch folder of its own."""
    if cluster_mode() and not settings.read("CSCNN_STATE") and state.root == _scratch:
        return ""
    return str(state.root)


def _private_scratch() -> Path:
    """A folder of this process alone, removed when it exits (as a pod's disk goes with the pod)."""
    global _scratch
    if _scratch is None or not _scratch.is_dir():
        _scratch = Path(tempfile.mkdtemp(prefix="cscnn-scratch-")).resolve()
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


@dataclass(frozen=True)
class State:
    root: Path

    @classmethod
    def from_env(cls, root: Path | str | None = None) -> State:
        chosen = root or settings.read("CSCNN_STATE")
        if not chosen:
            chosen = _private_scratch() if cluster_mode() else Path.cwd() / ".state"
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
    def data_registry_remote(self) -> str | None:
        """The data registry's git remote (a cluster), or None: the registry is the local folder alone."""
        return settings.read(REGISTRY_REMOTE_ENV)

    @property
    def dvc_remote(self) -> str:
        return settings.read("CSCNN_DVC_REMOTE") or str(self.root / "dvc-remote")

    @property
    def status_store(self) -> str:
        """Where each day's status record lives: `file` (days/<day>.json here, the default) or `mlflow` (the
        tracking server of `tracking_uri`: the default in cluster mode, or CSCNN_STATUS_STORE=mlflow)."""
        store = settings.read("CSCNN_STATUS_STORE") or ("mlflow" if cluster_mode() else "file")
        if store not in ("file", "mlflow"):
            raise ConfigError(f"CSCNN_STATUS_STORE={store!r}: 'file' or 'mlflow'")
        return store

    def day_status_file(self, day: str) -> Path:
        return self.root / "days" / f"{day}.json"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def servers(self) -> Path:
        """Records of the package check's running servers (`cscnn.tools.packaging.stop_stale_servers`)."""
        return self.root / "servers"

    @property
    def model_cache(self) -> Path:
        return self.root / "model-cache"

    @property
    def defaults_file(self) -> Path:
        return self.root / "defaults.json"

    def defaults(self) -> dict[str, str]:
        """What `remember_defaults` recorded (`{}` when nothing was): `landing`, `profile`."""
        try:
            values = json.loads(self.defaults_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.defaults_file}: unreadable ({exc}); delete it or fix it") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{self.defaults_file}: expected a JSON object, found {type(values).__name__}")
        return {key: str(value) for key, value in values.items() if key in ("landing", "profile")}

    def remember_defaults(self, landing: Path, profile: str) -> None:
        """Record where the local set-up put the data, so an Airflow run without params finds it."""
        from cscnn.files import write_json

        write_json(self.defaults_file, {"landing": str(Path(landing).resolve()), "profile": profile})
