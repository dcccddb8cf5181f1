"""The steps of the daily loop, each one function. KFP components, DVC stages and the CLI call these.

    validate -> version -> refresh embeddings -> train candidate -> evaluate (candidate and champion, same
    day) -> gate -> register (alias `challenger`) -> [gate passed] full embedding table -> package and
    smoke-check the service -> promote (alias `champion`)

The table and the package check come before `champion` moves, so the alias only ever names a version that
has its table and a service that answered a request. Each step prints what it decided (the task log) and
records it in the day's status (`cscnn.daily.status`), which the Airflow report task reads.
A failing step raises; nothing after it runs, and `champion` stays where it was.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cscnn.config import Config
from cscnn.daily.faults import failing_step
from cscnn.daily.status import DayStatus, mark, read, skip_reason
from cscnn.data.io import World, list_days, open_world
from cscnn.errors import ConfigError, CSCNNError, DataContractError
from cscnn.files import write_json
from cscnn.state import State, check_cluster_settings
from cscnn.variants import check_servable

if TYPE_CHECKING:
    import pandas as pd


class DataValidationError(DataContractError):
    """The day's data failed validation: the run stops before anything trains (a data error: not retried)."""


class DayAlreadyDecided(CSCNNError):
    """A pipeline run for a day the gate already decided, without `force_retrain`: running it again would
    register and maybe promote a second model for the same day."""


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _log(message: str) -> None:
    print(message, flush=True)


def registry_world(state: State, day: str | None = None) -> Path:
    """The data registry's world folder, what candidates train and evaluate on.

    On one machine it is the local registry the version step wrote. On a cluster (a data registry remote is
    set) this step has no such folder: the registry is cloned from its git remote and checked out at the
    commit the version step recorded for `day` in the day's status (the remote's tip when there is none yet),
    and the data pulled from the DVC remote.
    """
    if state.data_registry_remote is None:
        return state.registry_world
    from cscnn.daily.status import read
    from cscnn.tools import versioning

    recorded = read(state, day).data_version if day else None
    versioning.restore(state.data_registry, state.dvc_remote, recorded, git_remote=state.data_registry_remote)
    return state.registry_world


def previous_accepted_day(landing: Path, day: str, state: State) -> str | None:
    """The day to compare the category mix with: the latest day before `day` that passed validation and
    was versioned (a rejected day is no baseline); the landing's previous day before anything is versioned."""
    if state.data_registry_remote is not None:  # a cluster: the day names from the git remote, no data pulled
        from cscnn.tools import versioning

        names = versioning.versioned_days(state.data_registry, state.dvc_remote, state.data_registry_remote)
        return max((d for d in (names or list_days(Path(landing))) if d < day), default=None)
    world = state.registry_world
    source = world if (world / "impressions").is_dir() else Path(landing)
    return max((d for d in list_days(source) if d < day), default=None)


def validate(landing: Path, day: str, cfg: Config, state: State, out: Path) -> dict:
    """Great Expectations on the landing day (raw data is read, never changed). Raises on failure."""
    from cscnn.tools.validation import validate_day

    previous = previous_accepted_day(landing, day, state)
    mark(state, day, status=DayStatus.STARTED, error=None)
    try:
        report = validate_day(Path(landing), day, Path(out), cfg.validation, previous_day=previous)
    except DataContractError as exc:  # the day's file is missing or not Parquet: nothing could be checked
        failure = {"table": "impressions", "expectation": "file_readable", "column": None, "details": str(exc)}
        mark(state, day, status=DayStatus.REJECTED, validation={"success": False, "failures": [failure], "docs": "-"})
        raise DataValidationError(f"day {day} failed validation; nothing was trained: {exc}") from exc
    _log(report.summary())
    fields = {"validation": {"success": report.success, "failures": report.failures, "docs": str(report.docs_path)}}
    if not report.success:
        mark(state, day, status=DayStatus.REJECTED, **fields)
        raise DataValidationError(f"day {day} failed validation; nothing was trained.\n{report.summary()}")
    mark(state, day, status=DayStatus.VALIDATED, **fields)
    return report.to_dict()


def version(landing: Path, day: str, cfg: Config, state: State) -> dict:
    """DVC: add the day and the catalogue to the data registry, commit the pointers, push.

    `ready` says whether the versioned history is long enough to train on (train + validation + the held-out
    day); until it is, the run stops after this step with the status `waiting_for_history`.
    """
    from cscnn.tools import versioning

    remote = state.data_registry_remote
    versioning.init_registry(state.data_registry, state.dvc_remote, remote)
    data_version = versioning.version_day(Path(landing), day, state.data_registry, state.dvc_remote, remote)
    _log(f"data version {data_version.tag()} pushed to {data_version.remote}")
    history = [d for d in list_days(data_version.world_dir) if d <= day]
    needed = cfg.train.val_days + cfg.train.test_days + 1
    ready = len(history) >= needed
    status = DayStatus.VERSIONED if ready else DayStatus.WAITING_FOR_HISTORY
    if not ready:
        _log(f"{len(history)} day(s) versioned, {needed} needed to train a candidate: no training today")
    mark(state, day, status=status, data_version=data_version.tag(), history_days=len(history))
    return {
        **data_version.to_dict(),
        "world_dir": str(data_version.world_dir),
        "tag": data_version.tag(),
        "ready": ready,
    }


def refresh_embeddings(day: str, cfg: Config, state: State, out: Path) -> dict:
    """Embed the ads the champion's table lacks with the champion's CNN, and attach the extended table."""
    from cscnn.tools import registry
    from cscnn.training.embed import extend_table

    current = champion(cfg, state)
    if current is None:
        _log("embedding refresh skipped: no champion yet")
        return {"refreshed": 0, "skipped": "no champion yet"}
    checkpoint, table = registry.fetch(current, state)
    meta = extend_table(checkpoint, table, registry_world(state, day), Path(out), device=cfg.train.device)
    result = {"refreshed": meta["refreshed"], "n_items": meta["n_items"], "version": current.version}
    if meta["refreshed"]:
        ref = registry.attach_embeddings(current, Path(out), key=f"{day}-refresh", state=state)
        result["embeddings"] = ref.embeddings
    _log(f"embedding refresh: {meta['refreshed']} new item(s) embedded by champion v{current.version}")
    mark(state, day, refresh=result)
    return result


def train_candidate(day: str, cfg: Config, state: State, out: Path, pod_gpus: int | None = None) -> dict:
    """Train on the rolling window that ends the day before `day`; `day` itself is held out for the gate.

    `train.workers` processes on this machine (torchrun), or, with `train.nodes` > 1, a Kubeflow Trainer
    TrainJob on the cluster; the same worker entry point either way. `pod_gpus`: the GPUs the step's pod
    requested on a cluster (a mismatch with the workers is reported, not fatal).
    """
    from cscnn.training.launch import run_training

    if pod_gpus and cfg.train.nodes == 1 and pod_gpus != cfg.train.workers and _cuda_available():
        _log(f"note: this pod has {pod_gpus} GPU(s) and train.workers={cfg.train.workers}: one worker per GPU is best")

    if cfg.train.nodes > 1 and state.data_registry_remote:
        raise ConfigError(
            "train.nodes > 1 (a Kubeflow TrainJob) is not supported in cluster mode yet: its workers take the data "
            "and give back the checkpoint through the state volume (infra/README.md, Known gaps); use train.nodes=1"
        )
    if cfg.train.nodes > 1:
        card = _train_on_cluster(day, cfg, state, Path(out))
    else:
        card = run_training(registry_world(state, day), cfg, Path(out), until=day)
    summary = {
        "fingerprint": card["fingerprint"],
        "days": card["days"],
        "val_auc": card["val_auc"],
        "best_epoch": card["best_epoch"],
        "train_seconds": round(card["train_seconds"], 1),
        "workers": card.get("workers", 1),
    }
    _log(
        f"candidate {summary['fingerprint']} trained in {summary['train_seconds']} s by {summary['workers']} "
        f"worker(s) on {summary['days']['train']}"
    )
    mark(state, day, status=DayStatus.TRAINED, candidate=summary)
    return summary


def _train_on_cluster(day: str, cfg: Config, state: State, out: Path) -> dict:
    """Submit the run as a TrainJob, wait, and take its checkpoint from the state volume into `out`."""
    import uuid

    from cscnn.files import atomic_dir
    from cscnn.tools import trainjob
    from cscnn.training.checkpoint import read_card
    from cscnn.training.launch import worker_args

    name = trainjob.job_name(day, uuid.uuid4().hex[:8])
    checkpoint = trainjob.checkpoint_dir(state.root, name)
    world = registry_world(state, day)
    body = trainjob.manifest(name, trainjob.namespace(), cfg, worker_args(world, cfg, checkpoint, day))
    _log(f"TrainJob {name}: {cfg.train.nodes} node(s) x {cfg.train.workers} worker(s), {cfg.train.gpus} GPU(s)/node")
    with trainjob.submitted(body, echo=_log), atomic_dir(out) as tmp:  # the job deleted once its checkpoint is copied
        shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
    return read_card(out)


def champion(cfg: Config, state: State):
    """The registry's `champion` of the configured model (`serve.model_name`), or None before the first."""
    from cscnn.tools import registry

    return registry.resolve(registry.CHAMPION, state, cfg.serve.model_name)


def evaluate_against_champion(
    candidate_dir: Path, world_dir: Path, days: list[str] | None, cfg: Config, state: State, with_champion: bool
) -> dict:
    """Candidate (and, when asked and one exists, the champion) on the same days: what the gate reads.

    `{"days", "candidate", "champion"?, "champion_version"?}`; the champion's keys are absent, not None,
    when there is none (KFP's dict parameters cannot carry nulls).
    """
    from cscnn.tools import registry
    from cscnn.training.evaluate import evaluate_checkpoint

    candidate = evaluate_checkpoint(Path(candidate_dir), world_dir, days, device=cfg.train.device)
    evaluation = {"days": candidate["days"], "candidate": candidate}
    champion_ref = champion(cfg, state) if with_champion else None
    if champion_ref is not None:
        checkpoint, _ = registry.fetch(champion_ref, state)
        metrics = evaluate_checkpoint(checkpoint, world_dir, candidate["days"], device=cfg.train.device)
        evaluation.update(champion=metrics, champion_version=champion_ref.version)
    return evaluation


def evaluate(candidate_dir: Path, day: str, cfg: Config, state: State) -> dict:
    """Candidate and champion on the same held-out day."""
    evaluation = evaluate_against_champion(candidate_dir, registry_world(state, day), [day], cfg, state, True)
    candidate, champ = evaluation["candidate"], evaluation.get("champion")
    champ_text = f"{champ['auc']:.4f} (v{evaluation['champion_version']})" if champ else "none"
    _log(f"eval {day}: candidate AUC {candidate['auc']:.4f}, champion AUC {champ_text}")
    mark(state, day, status=DayStatus.EVALUATED, evaluation={"candidate_auc": candidate["auc"], "champion": champ_text})
    return evaluation


def decide_gate(evaluation: dict, cfg: Config):
    """The gate's decision on an evaluation (`evaluate_against_champion`)."""
    from cscnn.tools.gate import decide

    return decide(evaluation["candidate"], evaluation.get("champion"), cfg.gate, evaluation.get("champion_version"))


def gate(evaluation: dict, day: str, cfg: Config, state: State) -> dict:
    decision = decide_gate(evaluation, cfg)
    _log(decision.summary())
    mark(state, day, gate=decision.to_dict())
    return decision.to_dict()


def input_example(world: World, day: str, rows: int = 5) -> pd.DataFrame:
    """The registered model's input example: the day's first impressions as the pyfunc takes them, each image
    as the base64 of its file (no local path: the example must load on another machine)."""
    from cscnn.data import schema
    from cscnn.tools import registry
    from cscnn.training.features import feature_frame

    frame = feature_frame(world, world.impressions([day])).head(rows)
    example = frame[[*schema.SPARSE_FEATURES, "price"]].astype({"position": str, "hour": str}).copy()
    example["image"] = [registry.encode_image(world.images_dir / name) for name in frame["image"]]
    return example


def register(
    candidate_dir: Path,
    day: str,
    evaluation: dict,
    decision: dict,
    data_version: str,
    validation_dir: Path | None,
    cfg: Config,
    state: State,
    work: Path,
) -> dict:
    """One MLflow run for the candidate (params, metrics, pictures, reports, data version) and a registered
    version with the alias `challenger`. `champion` does not move here."""
    from cscnn.tools import registry
    from cscnn.training import attention_plots, plots

    world = open_world(registry_world(state, day)).until(day)
    work = Path(work)
    cand, champ = evaluation["candidate"], evaluation.get("champion")
    pictures = work / "pictures"
    plots.roc_curve_png(Path(candidate_dir), world, day, pictures / "roc_curve.png")
    plots.category_auc_png(cand, champ, pictures / "per_category_auc.png")
    attention_plots.attention_png(Path(candidate_dir), world, pictures / "attention_heatmaps.png")
    write_json(work / "reports" / "evaluation.json", evaluation)
    write_json(work / "reports" / "gate.json", decision)
    artifacts = {"pictures": pictures, "reports": work / "reports"}
    if validation_dir is not None and Path(validation_dir).is_dir():
        artifacts["validation"] = Path(validation_dir)
    metrics = {
        "auc": cand["auc"],
        "logloss": cand["logloss"],
        "cold_start_auc": cand["cold_start_auc"],
        "champion_auc": champ["auc"] if champ else None,
        "gate_passed": float(decision["passed"]),
        **{f"auc_{name}": value for name, value in cand["per_category_auc"].items()},
    }
    params = {f"{section}.{key}": value for section, values in cfg.to_dict().items() for key, value in values.items()}
    ref = registry.log_candidate(
        Path(candidate_dir),
        metrics,
        params,
        data_version,
        state=state,
        cfg=cfg,
        artifacts=artifacts,
        input_example=input_example(world, day),
        tags={"day": day, "gate": "pass" if decision["passed"] else "fail"},
        decision=decision,
    )
    _log(f"registered {ref.name} v{ref.version} (alias challenger), MLflow run {ref.run_id}")
    mark(state, day, candidate_version=ref.version, mlflow_run=ref.run_id)
    return ref.to_dict()


def publish_table(ref: dict, candidate_dir: Path, day: str, cfg: Config, state: State, out: Path) -> dict:
    """The full embedding table for a new model version, logged with it."""
    from cscnn.tools import registry
    from cscnn.training.embed import export_table

    meta = export_table(Path(candidate_dir), registry_world(state, day), Path(out), device=cfg.train.device)
    model_ref = registry.attach_embeddings(registry.ModelRef(**ref), Path(out), key=day, state=state)
    _log(f"embedding table of v{model_ref.version}: {meta['n_items']} items -> {model_ref.embeddings}")
    return model_ref.to_dict()


def package(ref: dict, day: str, cfg: Config, state: State) -> dict:
    """Build the ranking service's bento and check that it loads this version and answers a canned request."""
    from cscnn.tools import packaging

    build = packaging.build_bento(state.bentoml_home, version=f"v{ref['version']}")
    check = packaging.smoke_check(build.tag, version=ref["version"], state=state, bentoml_home=build.bentoml_home)
    top = [item["item_id"] for item in check.top]
    result = {
        "tag": build.tag,
        "build_seconds": round(build.seconds, 1),
        "ready_seconds": round(check.seconds_to_ready, 1),
        "latency_ms": round(check.latency_ms, 2),
        "top_items": top,
    }
    _log(f"bento {build.tag} built in {build.seconds:.1f} s; served v{ref['version']} answered, top items {top}")
    mark(state, day, package=result)
    return result


def promote(ref: dict, day: str, cfg: Config, state: State) -> dict:
    from cscnn.tools import registry

    previous = champion(cfg, state)
    registry.promote(registry.ModelRef(**ref), state)
    result = {"champion": ref["version"], "previous": previous.version if previous else None}
    _log(f"champion -> v{ref['version']} (was {result['previous']})")
    mark(state, day, status=DayStatus.PROMOTED, champion=ref["version"])
    return result


def not_promoted(day: str, decision: dict, cfg: Config, state: State) -> dict:
    current = champion(cfg, state)
    version = current.version if current else None
    mark(state, day, status=DayStatus.NOT_PROMOTED, champion=version)
    return {"champion": version, "reasons": decision.get("reasons", [])}


def refuse_decided(day: str, state_dir: str, force_retrain: bool) -> None:
    """The skip rule of `orchestration.run_day` inside the pipeline, for a run submitted straight to a KFP
    backend: a decided day raises DayAlreadyDecided, before any step records anything."""
    check_cluster_settings()
    reason = skip_reason(read(State.from_env(state_dir or None), day), force_retrain)
    if reason:
        raise DayAlreadyDecided(f"{reason}: run the pipeline with force_retrain=true to train it again")


@contextlib.contextmanager
def running(step: str, day: str, profile: str, overrides: list[str], state_dir: str) -> Iterator[tuple[Config, State]]:
    """What every pipeline component runs its step in: the run's config and state, with the step recorded in the
    day's status (`faults.failing_step`): a step that raises, config included, leaves `failed`/`rejected`."""
    check_cluster_settings()  # before anything is written: a missing service would swallow it
    state = State.from_env(state_dir or None)
    with failing_step(state, day, step):
        yield context(profile, overrides, state_dir)


def context(profile: str, overrides: list[str], state_dir: str) -> tuple[Config, State]:
    """What every pipeline component starts with: the run's config (a servable variant) and the state."""
    from cscnn.config import load_config

    check_servable((cfg := load_config(profile, overrides=list(overrides))).model.variant)
    return cfg, State.from_env(state_dir or None)
