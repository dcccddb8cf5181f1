"""MLflow: which model. Runs, the registered model, its aliases and the embedding table of each version.

    champion     the version that serves (moved only by `promote`, i.e. by a passing gate, or by `rollback`)
    challenger   the latest candidate the daily run trained

A registered version is a pyfunc model (scores a frame of impressions, images included, with the
checkpoint it carries) with its signature; the run that produced it also holds the version's embedding
table under `embeddings/<key>`, and the version's tag `embeddings` names the table that goes with it.
The version loads anywhere (`mlflow.pyfunc.load_model` in a fresh virtualenv built from its own
requirements.txt): it carries this package's source (`code_paths`) and pins what that source imports.
A daily embedding refresh logs a new key and moves the tag; the service swaps model and table together.

Nothing here changes an alias unless asked to; a failed run leaves `champion` where it was.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from cscnn.config import Config
from cscnn.data import schema
from cscnn.errors import CSCNNError
from cscnn.files import atomic_dir, flat_name
from cscnn.state import State
from cscnn.tools import model_card

CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "cscnn-daily"
CHECKPOINT_ARTIFACT = "checkpoint"  # inside the logged model's artifacts
EMBEDDINGS_TAG = "embeddings"
DAY_TAG = "day"  # the day a version was gated on: a run tag, also on the version (the gate's day_order check)
REGISTRATION_TAG = "registration"  # in_progress until the version is complete (see log_candidate)
IN_PROGRESS, COMPLETE = "in_progress", "complete"
# What the pyfunc imports (this package's checkpoint, models and image decoding), pinned at logging time; the
# package itself travels as `code_paths`. tests/system/test_model_portability.py checks the list against the imports.
PYFUNC_REQUIREMENTS = ("mlflow-skinny", "torch", "numpy", "pandas", "pyarrow", "pillow", "pyyaml", "tqdm")


def _configure_env() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def client(state: State | None = None):
    """An MlflowClient on the state's tracking store (a SQLite file by default); creates the experiment."""
    _configure_env()
    import mlflow
    from mlflow import MlflowClient

    state = state or State.from_env()
    if state.tracking_uri.startswith("sqlite:///"):
        state.root.mkdir(parents=True, exist_ok=True)
    user_setting = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(state.tracking_uri)
    mlflow.set_registry_uri(state.tracking_uri)
    # MLflow also exports the URI to os.environ (for subprocesses); but `State.tracking_uri` reads that variable
    # as the user's setting, so leaving it would pin every later state of this process to this one's registry.
    if user_setting is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_setting
    mlflow_client = MlflowClient(tracking_uri=state.tracking_uri, registry_uri=state.tracking_uri)
    if mlflow_client.get_experiment_by_name(EXPERIMENT) is None:
        location = state.artifact_root.as_uri() if state.tracking_uri.startswith("sqlite") else None
        mlflow_client.create_experiment(EXPERIMENT, artifact_location=location)
    return mlflow_client


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    fingerprint: str
    embeddings: str | None = None  # artifact path of the version's table within its run
    day: str | None = None  # the day it was gated on (versions registered before the tag existed: None)

    def to_dict(self) -> dict:
        """Without unset fields (KFP's dict parameters cannot carry nulls)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _ref(mv) -> ModelRef:
    return ModelRef(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        fingerprint=mv.tags.get("fingerprint", ""),
        embeddings=mv.tags.get(EMBEDDINGS_TAG),
        day=mv.tags.get(DAY_TAG),
    )


def model_name(cfg: Config | None = None) -> str:
    return (cfg or Config()).serve.model_name


def resolve(alias: str = CHAMPION, state: State | None = None, name: str | None = None) -> ModelRef | None:
    """The version an alias names now (one registry call: cheap enough to poll), or None if unset."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(state)
    try:
        return _ref(mlflow_client.get_model_version_by_alias(name or model_name(), alias))
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def get_version(version: str, state: State | None = None, name: str | None = None) -> ModelRef:
    from mlflow.exceptions import MlflowException

    try:
        return _ref(client(state).get_model_version(name or model_name(), str(version)))
    except MlflowException as exc:
        raise CSCNNError(f"model {name or model_name()!r} has no version {version}: {exc.message}") from exc


def list_versions(state: State | None = None, name: str | None = None) -> list[ModelRef]:
    versions = client(state).search_model_versions(f"name = '{name or model_name()}'")
    return sorted((_ref(mv) for mv in versions), key=lambda ref: int(ref.version))


def fetch(ref: ModelRef, state: State | None = None) -> tuple[Path, Path]:
    """Download the version's checkpoint and its current embedding table into the local cache.

    Cached by (version, table key): a second call is free. Returns (checkpoint_dir, table_dir).
    """
    import mlflow

    state = state or State.from_env()
    client(state)
    if ref.embeddings is None:
        raise CSCNNError(f"model version {ref.version} has no embedding table yet (tag '{EMBEDDINGS_TAG}' unset)")
    # The tag is read from the registry: a plain relative name or nothing (`..` would leave the cache folder).
    target = state.model_cache / ref.name / ref.version / flat_name(ref.embeddings)
    if not (target / "checkpoint").is_dir() or not (target / "table").is_dir():
        with atomic_dir(target) as tmp:
            model_dir = Path(
                mlflow.artifacts.download_artifacts(f"models:/{ref.name}/{ref.version}", dst_path=str(tmp / "m"))
            )
            # pyfunc keeps artifacts under artifacts/<source folder name>/
            cards = sorted(model_dir.glob("artifacts/*/model.json"))
            if len(cards) != 1:
                raise CSCNNError(
                    f"model version {ref.version}: expected one checkpoint in its artifacts, found {cards}"
                )
            shutil.move(str(cards[0].parent), tmp / "checkpoint")
            shutil.rmtree(tmp / "m")
            table = mlflow.artifacts.download_artifacts(
                run_id=ref.run_id, artifact_path=ref.embeddings, dst_path=str(tmp / "t")
            )
            shutil.move(table, tmp / "table")
            shutil.rmtree(tmp / "t", ignore_errors=True)
    return target / "checkpoint", target / "table"


def encode_image(path: Path) -> str:
    """The `image` input of the pyfunc: the image file's bytes in base64, so a request names no local file."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _decode_images(encoded: pd.Series, size: int) -> np.ndarray:
    from cscnn.data.images import load_image
    from cscnn.errors import ImageError

    out = np.empty((len(encoded), 3, size, size), dtype=np.uint8)
    for row, text in enumerate(encoded):
        try:
            out[row] = load_image(io.BytesIO(base64.b64decode(text, validate=True)), size)  # PIL reads a file object
        except (ValueError, ImageError) as exc:
            raise ImageError(f"row {row}: the image column must hold the base64 of an image file ({exc})") from exc
    return out


class CTRPyfunc(PythonModel):
    """The registered model as an MLflow pyfunc: scores a frame of impressions end to end (CNN included).

    Input columns: the sparse features of `schema.SPARSE_FEATURES` (strings), `price` (float) and `image`
    (the image file in base64: `encode_image`). Output: click probability per row. Serving does not use this
    (it runs the CTR network over the lookup table); it makes every registered version usable on its own.
    """

    def load_context(self, context) -> None:
        from cscnn.training.checkpoint import load_checkpoint

        self.model, self.encoder, self.cfg, self.card = load_checkpoint(Path(context.artifacts[CHECKPOINT_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        import torch

        from cscnn.models import Batch, ImageBank

        frame = model_input.copy()
        frame["log_price"] = np.log1p(frame["price"].to_numpy(dtype=np.float64))
        images = _decode_images(frame["image"], self.cfg.model.image_size) if self.model.uses_images else None
        batch = Batch(
            sparse=torch.from_numpy(self.encoder.encode_sparse(frame)),
            dense=torch.from_numpy(np.array(frame[list(schema.DENSE_FEATURES)], dtype=np.float32)),  # writable
            item_row=torch.arange(len(frame)),
            label=torch.zeros(len(frame)),
        )
        bank = None
        if images is not None:
            categories = self.encoder.category_index(frame["category"].astype(str))
            bank = ImageBank(images=torch.from_numpy(images), categories=torch.from_numpy(categories))
        with torch.no_grad():
            return self.model(batch, bank)["y_pred"].numpy()


def pyfunc_requirements() -> list[str]:
    """`PYFUNC_REQUIREMENTS` pinned to this environment's versions; a local label (torch's `+cpu`) is dropped,
    so that pip finds the release on any index."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in PYFUNC_REQUIREMENTS]


def _log_pyfunc(checkpoint_dir: Path, input_example: pd.DataFrame | None, data_version: str):
    """The pyfunc in the active run, with this package's source (without bytecode) and pinned requirements."""
    import mlflow
    from mlflow.models import infer_signature

    import cscnn

    signature = None
    if input_example is not None:
        signature = infer_signature(input_example, np.zeros(len(input_example), dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "cscnn"
        shutil.copytree(Path(cscnn.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=CTRPyfunc(),
            artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_dir)},
            code_paths=[str(package)],
            signature=signature,
            input_example=input_example,
            pip_requirements=pyfunc_requirements(),
            tags={"data_version": data_version},
        )


def log_candidate(
    checkpoint_dir: Path,
    metrics: dict,
    params: dict,
    data_version: str,
    state: State | None = None,
    cfg: Config | None = None,
    artifacts: dict[str, Path] | None = None,
    input_example: pd.DataFrame | None = None,
    tags: dict[str, str] | None = None,
    decision: dict | None = None,
) -> ModelRef:
    """One MLflow run for a trained candidate: params, metrics (per epoch too), artifacts, the data version
    (a tag and the run's input dataset), and a new registered version (signature, model card) that gets the
    alias `challenger`. `champion` does not move.

    All or nothing: the version is registered last, tagged `registration=in_progress` until its run has ended,
    then `complete`; a failure ends the run FAILED, and a version left half-made by a killed run is deleted by
    `clean_incomplete` at the next run. A candidate with the fingerprint and data version of a complete version
    (a rerun of the same day) registers nothing: that version is reused, its card gets this run's decision, and
    it becomes `challenger` again."""
    import json

    import mlflow

    state = state or State.from_env()
    mlflow_client = client(state)
    card = json.loads((Path(checkpoint_dir) / "model.json").read_text())
    fingerprint, name = card["fingerprint"], model_name(cfg)
    description = model_card.version_card(card, data_version, metrics, decision)
    existing = find_version(fingerprint, data_version, state, name)
    if existing is not None:
        mlflow_client.set_registered_model_alias(name, CHALLENGER, existing.version)
        model_card.describe(mlflow_client, name, existing.version, description)
        return existing
    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=tags.get("day") if tags else None):
        mlflow.set_tags({"data_version": data_version, "fingerprint": fingerprint, **(tags or {})})
        mlflow.log_input(model_card.data_version_dataset(data_version, state.dvc_remote), context="training")
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        model_card.log_history(card.get("history", []))
        mlflow.log_text(description, "model_card.md")
        for artifact_path, local in (artifacts or {}).items():
            if Path(local).is_dir():
                mlflow.log_artifacts(str(local), artifact_path)
            else:
                mlflow.log_artifact(str(local), artifact_path)
        info = _log_pyfunc(Path(checkpoint_dir), input_example, data_version)
        labels = {**(tags or {}), "fingerprint": fingerprint, "data_version": data_version}  # the run's too: `day`
        registered = mlflow.register_model(info.model_uri, name, tags={**labels, REGISTRATION_TAG: IN_PROGRESS})
        version = str(registered.version)
        model_card.describe(mlflow_client, name, version, description)
        mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    mlflow_client.set_model_version_tag(name, version, REGISTRATION_TAG, COMPLETE)
    return get_version(version, state, name)


def is_complete(tags: dict[str, str]) -> bool:
    """A version whose registration finished (versions from before the tag existed: those with a fingerprint)."""
    return bool(tags.get("fingerprint")) and tags.get(REGISTRATION_TAG, COMPLETE) == COMPLETE


def find_version(fingerprint: str, data_version: str, state: State | None = None, name: str | None = None):
    """The complete version of this model trained to `fingerprint` on `data_version` (the oldest), or None."""
    name = name or model_name()
    versions = client(state).search_model_versions(f"name = '{name}'")
    same = [
        mv
        for mv in versions
        if is_complete(mv.tags)
        and mv.tags.get("fingerprint") == fingerprint
        and mv.tags.get("data_version") == data_version
    ]
    return _ref(min(same, key=lambda mv: int(mv.version))) if same else None


def clean_incomplete(state: State | None = None, name: str | None = None) -> dict[str, list[str]]:
    """Undo what a killed run left half-made: delete the model's versions whose registration did not complete
    (never the champion's) and end the experiment's RUNNING runs as FAILED.

    Only safe while no registration runs: the loop calls it holding the state's lock (`cscnn.locks`)."""
    name = name or model_name()
    mlflow_client = client(state)
    champion = resolve(CHAMPION, state, name)
    deleted = []
    for mv in mlflow_client.search_model_versions(f"name = '{name}'"):
        if not is_complete(mv.tags) and (champion is None or champion.version != str(mv.version)):
            mlflow_client.delete_model_version(name, str(mv.version))
            deleted.append(str(mv.version))
    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT)
    failed = []
    for run in mlflow_client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
        mlflow_client.set_terminated(run.info.run_id, status="FAILED")
        failed.append(run.info.run_id)
    return {"deleted_versions": sorted(deleted, key=int), "failed_runs": failed}


def attach_embeddings(ref: ModelRef, table_dir: Path, key: str, state: State | None = None) -> ModelRef:
    """Log a table built by this version's CNN under `embeddings/<key>` and point the version's tag at it."""
    import json

    meta = json.loads((Path(table_dir) / "meta.json").read_text())
    if ref.fingerprint and meta["model_fingerprint"] != ref.fingerprint:
        raise CSCNNError(
            f"table {table_dir} was built by model {meta['model_fingerprint']}, not by version {ref.version} "
            f"({ref.fingerprint})"
        )
    mlflow_client = client(state)
    artifact_path = f"{EMBEDDINGS_TAG}/{key}"
    flat_name(artifact_path)  # refuse a key that is not a plain name before anything is logged
    mlflow_client.log_artifacts(ref.run_id, str(table_dir), artifact_path)
    mlflow_client.set_model_version_tag(ref.name, ref.version, EMBEDDINGS_TAG, artifact_path)
    return get_version(ref.version, state, ref.name)


def promote(ref: ModelRef, state: State | None = None) -> None:
    """Move `champion` to this version; the previous champion is remembered for `rollback`."""
    mlflow_client = client(state)
    previous = resolve(CHAMPION, state, ref.name)
    if previous is not None and previous.version != ref.version:
        mlflow_client.set_model_version_tag(ref.name, ref.version, "previous_champion", previous.version)
    mlflow_client.set_registered_model_alias(ref.name, CHAMPION, ref.version)


def rollback(state: State | None = None, name: str | None = None, to_version: str | None = None) -> ModelRef:
    """Move `champion` back: to `to_version`, else to the version that was champion before this one."""
    current = resolve(CHAMPION, state, name)
    if current is None:
        raise CSCNNError("no champion to roll back: the alias 'champion' is not set")
    mlflow_client = client(state)
    target = to_version or mlflow_client.get_model_version(current.name, current.version).tags.get("previous_champion")
    if not target:
        raise CSCNNError(f"champion version {current.version} has no previous champion to roll back to")
    ref = get_version(target, state, current.name)
    if ref.embeddings is None:
        raise CSCNNError(f"version {target} has no embedding table; it cannot serve")
    mlflow_client.set_registered_model_alias(current.name, CHAMPION, ref.version)
    return ref
