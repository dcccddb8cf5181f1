"""The steps of the daily loop, each one function. KFP components, DVC stages and the CLI call these.

The chain, each step's name, component, record field and result type are in one table, `cscnn.daily.chain`
(docs/daily_loop.md shows it); each function here has its step's name and returns its typed result
(`cscnn.daily.results`). The table and the package check come before `champion` moves, so the alias only
ever names a version that has its table and a service that answered a request. Each step prints what it
decided (the task log) and records it in the day's status (`cscnn.daily.status`), which the Airflow report
task reads.
A failing step raises; nothing after it runs, and `champion` stays where it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from cscnn.config import Config
from cscnn.daily.results import (
    CandidateSummary,
    Evaluation,
    KeptChampion,
    PackageResult,
    Promotion,
    RefreshResult,
    Versioned,
)
from cscnn.daily.status import DayStatus, mark
from cscnn.data.io import World, list_days, open_world
from cscnn.errors import ConfigError, DataContractError
from cscnn.files import write_json
from cscnn.state import State

if TYPE_CHECKING:
    import pandas as pd

    from cscnn.tools.gate import GateDecision
    from cscnn.tools.model_registry import ModelRef
    from cscnn.tools.validation import ValidationReport
    from cscnn.training.checkpoint import CheckpointCard

ROC_POINTS_FILE = "reports/roc.json"  # in register's work folder: the candidate's ROC, for the KFP UI and MLflow


class DataValidationError(DataContractError):
    """The day's data failed validation: the run stops before anything trains (a data error: not retried)."""


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


def validate(landing: Path, day: str, cfg: Config, state: State, out: Path) -> ValidationReport:
    """Great Expectations on the landing day (raw data is read, never changed). Raises on failure."""
    from cscnn.daily.order import check_predecessors
    from cscnn.tools.validation import validate_day

    check_predecessors(Path(landing), day, cfg, state)  # before anything of the day is recorded
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
    return report


def version(landing: Path, day: str, cfg: Config, state: State) -> Versioned:
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
    return Versioned(
        tag=data_version.tag(),
        commit=data_version.commit,
        world_dir=str(data_version.world_dir),
        history_days=len(history),
        ready=ready,
        data_version=data_version.to_dict(),
    )


def refresh_embeddings(day: str, cfg: Config, state: State, out: Path) -> RefreshResult:
    """Embed the ads the champion's table lacks with the champion's CNN, and attach the extended table."""
    from cscnn.tools import model_registry
    from cscnn.training.embed import extend_table

    current = champion(cfg, state)
    if current is None:
        _log("embedding refresh skipped: no champion yet")
        return RefreshResult(refreshed=0, skipped="no champion yet")
    checkpoint, table = model_registry.fetch(current, state)
    meta = extend_table(checkpoint, table, registry_world(state, day), Path(out), device=cfg.train.device)
    embeddings = None
    if meta["refreshed"]:
        embeddings = model_registry.attach_embeddings(current, Path(out), key=f"{day}-refresh", state=state).embeddings
    result = RefreshResult(meta["refreshed"], meta["n_items"], current.version, embeddings)
    _log(f"embedding refresh: {meta['refreshed']} new item(s) embedded by champion v{current.version}")
    mark(state, day, refresh=result.record())
    return result


def train_candidate(day: str, cfg: Config, state: State, out: Path, pod_gpus: int | None = None) -> CandidateSummary:
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
    summary = CandidateSummary(
        fingerprint=card["fingerprint"],
        days=card["days"],
        val_auc=card["val_auc"],
        best_epoch=card["best_epoch"],
        train_seconds=round(card["train_seconds"], 1),
        workers=card.get("workers", 1),
    )
    _log(
        f"candidate {summary.fingerprint} trained in {summary.train_seconds} s by {summary.workers} "
        f"worker(s) on {summary.days['train']}"
    )
    mark(state, day, status=DayStatus.TRAINED, candidate=summary.record())
    return summary


def _train_on_cluster(day: str, cfg: Config, state: State, out: Path) -> CheckpointCard:
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


def champion(cfg: Config, state: State) -> ModelRef | None:
    """The registry's `champion` of the configured model (`serve.model_name`), or None before the first."""
    from cscnn.tools import model_registry

    return model_registry.resolve(model_registry.CHAMPION, state, cfg.serve.model_name)


def compare_with_champion(
    candidate_dir: Path, world_dir: Path, days: list[str] | None, cfg: Config, state: State, with_champion: bool
) -> Evaluation:
    """Candidate (and, when asked and one exists, the champion) on the same days: what the gate reads."""
    from cscnn.tools import model_registry
    from cscnn.training.evaluate import evaluate_checkpoint

    candidate = evaluate_checkpoint(Path(candidate_dir), world_dir, days, device=cfg.train.device)
    champion_ref = champion(cfg, state) if with_champion else None
    if champion_ref is None:
        return Evaluation(days=candidate["days"], candidate=candidate)
    checkpoint, _ = model_registry.fetch(champion_ref, state)
    metrics = evaluate_checkpoint(checkpoint, world_dir, candidate["days"], device=cfg.train.device)
    return Evaluation(
        candidate["days"],
        candidate,
        champion=metrics,
        champion_version=champion_ref.version,
        champion_day=champion_ref.day,
    )


def evaluate(candidate_dir: Path, day: str, cfg: Config, state: State) -> Evaluation:
    """Candidate and champion on the same held-out day."""
    evaluation = compare_with_champion(candidate_dir, registry_world(state, day), [day], cfg, state, True)
    _log(f"eval {day}: candidate AUC {evaluation.candidate['auc']:.4f}, champion AUC {evaluation.champion_text}")
    mark(state, day, status=DayStatus.EVALUATED, evaluation=evaluation.record())
    return evaluation


def decide_gate(evaluation: Evaluation, cfg: Config) -> GateDecision:
    """The gate's decision on an evaluation (`compare_with_champion`)."""
    from cscnn.tools.gate import decide

    day = evaluation.days[-1] if evaluation.days else None
    return decide(
        evaluation.candidate, evaluation.champion, cfg.gate, evaluation.champion_version, day, evaluation.champion_day
    )


def gate(evaluation: Evaluation, day: str, cfg: Config, state: State) -> GateDecision:
    decision = decide_gate(evaluation, cfg)
    _log(decision.summary())
    mark(state, day, gate=decision.to_dict())
    return decision


def input_example(world: World, day: str, rows: int = 5) -> pd.DataFrame:
    """The registered model's input example: the day's first impressions as the pyfunc takes them, each image
    as the base64 of its file (no local path: the example must load on another machine)."""
    from cscnn.data import schema
    from cscnn.tools import model_registry
    from cscnn.training.features import feature_frame

    frame = feature_frame(world, world.impressions([day])).head(rows)
    example = frame[[*schema.SPARSE_FEATURES, "price"]].astype({"position": str, "hour": str}).copy()
    example["image"] = [model_registry.encode_image(world.images_dir / name) for name in frame["image"]]
    return example


def register(
    candidate_dir: Path,
    day: str,
    evaluation: Evaluation,
    decision: GateDecision,
    data_version: str,
    validation_dir: Path | None,
    cfg: Config,
    state: State,
    work: Path,
) -> ModelRef:
    """One MLflow run for the candidate (params, metrics, pictures, reports, data version) and a registered
    version with the alias `challenger`. `champion` does not move here."""
    from cscnn.tools import model_registry
    from cscnn.training import attention_plots, plots

    world = open_world(registry_world(state, day)).until(day)
    work = Path(work)
    cand, champ = evaluation.candidate, evaluation.champion
    pictures = work / "pictures"
    plots.roc_curve_png(Path(candidate_dir), world, day, pictures / "roc_curve.png", points=work / ROC_POINTS_FILE)
    plots.category_auc_png(cand, champ, pictures / "per_category_auc.png")
    attention_plots.attention_png(Path(candidate_dir), world, pictures / "attention_heatmaps.png")
    write_json(work / "reports" / "evaluation.json", evaluation.to_dict())
    write_json(work / "reports" / "gate.json", decision.to_dict())
    artifacts = {"pictures": pictures, "reports": work / "reports"}
    if validation_dir is not None and Path(validation_dir).is_dir():
        artifacts["validation"] = Path(validation_dir)
    metrics = {
        "auc": cand["auc"],
        "logloss": cand["logloss"],
        "cold_start_auc": cand["cold_start_auc"],
        "champion_auc": champ["auc"] if champ else None,
        "gate_passed": float(decision.passed),
        **{f"auc_{name}": value for name, value in cand["per_category_auc"].items()},
    }
    params = {f"{section}.{key}": value for section, values in cfg.to_dict().items() for key, value in values.items()}
    ref = model_registry.log_candidate(
        Path(candidate_dir),
        metrics,
        params,
        data_version,
        state=state,
        cfg=cfg,
        artifacts=artifacts,
        input_example=input_example(world, day),
        tags={"day": day, "gate": "pass" if decision.passed else "fail"},
        decision=decision.to_dict(),
    )
    _log(f"registered {ref.name} v{ref.version} (alias challenger), MLflow run {ref.run_id}")
    mark(state, day, candidate_version=ref.version, mlflow_run=ref.run_id)
    return ref


def publish_table(ref: ModelRef, candidate_dir: Path, day: str, cfg: Config, state: State, out: Path) -> ModelRef:
    """The full embedding table for a new model version, logged with it."""
    from cscnn.tools import model_registry
    from cscnn.training.embed import export_table

    meta = export_table(Path(candidate_dir), registry_world(state, day), Path(out), device=cfg.train.device)
    model_ref = model_registry.attach_embeddings(ref, Path(out), key=day, state=state)
    _log(f"embedding table of v{model_ref.version}: {meta['n_items']} items -> {model_ref.embeddings}")
    return model_ref


def package(ref: ModelRef, day: str, cfg: Config, state: State) -> PackageResult:
    """Build the ranking service's bento and check that it loads this version and answers a canned request."""
    from cscnn.tools import packaging

    build = packaging.build_bento(state.bentoml_home, version=f"v{ref.version}")
    check = packaging.smoke_check(build.tag, version=ref.version, state=state, bentoml_home=build.bentoml_home)
    top = [item["item_id"] for item in check.top]
    result = PackageResult(
        tag=build.tag,
        build_seconds=round(build.seconds, 1),
        ready_seconds=round(check.seconds_to_ready, 1),
        latency_ms=round(check.latency_ms, 2),
        top_items=top,
    )
    _log(f"bento {build.tag} built in {build.seconds:.1f} s; served v{ref.version} answered, top items {top}")
    mark(state, day, package=result.record())
    return result


def promote(ref: ModelRef, day: str, cfg: Config, state: State) -> Promotion:
    from cscnn.tools import model_registry

    previous = champion(cfg, state)
    model_registry.promote(ref, state)
    result = Promotion(champion=ref.version, previous=previous.version if previous else None)
    _log(f"champion -> v{ref.version} (was {result.previous})")
    mark(state, day, status=DayStatus.PROMOTED, champion=ref.version)
    return result


def keep_champion(day: str, decision: GateDecision, cfg: Config, state: State) -> KeptChampion:
    """The gate said no: the day is `not_promoted` and `champion` stays where it was."""
    current = champion(cfg, state)
    version = current.version if current else None
    mark(state, day, status=DayStatus.NOT_PROMOTED, champion=version)
    return KeptChampion(champion=version, reasons=decision.reasons)
