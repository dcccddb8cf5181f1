"""The body of every KFP component, written once: `run(step, arguments)`.

A component (`kfp_pipelines.components`) is only its typed signature, which KFP needs to compile it: its body
hands its arguments to `run`, which takes the shared parameters (`chain.SHARED_PARAMETERS`), runs the step
inside `running` (the step recorded in the day's status under its task name; a step that raises, config
included, leaves `failed`/`rejected`) and turns the step's typed result into what KFP carries: a parameter
(JSON) or an artifact file, with `to_dict`/`from_dict` at this boundary only. Artifacts are duck-typed (`.path`,
`.metadata`), so this module does not import kfp.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cscnn.config import Config
from cscnn.daily import chain, steps
from cscnn.daily.faults import failing_step, reported
from cscnn.daily.results import Evaluation
from cscnn.daily.status import skip_reason
from cscnn.errors import CSCNNError
from cscnn.state import State, check_cluster_settings
from cscnn.variants import check_servable


class DayAlreadyDecided(CSCNNError):
    """A pipeline run for a day the gate already decided, without `force_retrain`: running it again would
    register and maybe promote a second model for the same day."""


def run(step: str, arguments: dict[str, Any]) -> Any:
    """Run the step `step` of `chain.STEPS` with a component's arguments; returns what the component returns."""
    arguments = dict(arguments)
    shared = {name: arguments.pop(name) for name in chain.SHARED_PARAMETERS}
    if step == "validate":  # the skip rule, before anything is recorded
        refuse_decided(shared["day"], shared["state_dir"], arguments.pop("force_retrain", False))
    with running(chain.STEP[step].task, **shared) as (cfg, state):
        return _BODIES[step](shared["day"], cfg, state, **arguments)


def refuse_decided(day: str, state_dir: str, force_retrain: bool) -> None:
    """The skip rule of `orchestration.run_day` inside the pipeline, for a run submitted straight to a KFP
    backend: a decided day raises DayAlreadyDecided, before any step records anything."""
    check_cluster_settings()
    reason = skip_reason(reported(State.from_env(state_dir or None), day), force_retrain)
    if reason:
        raise DayAlreadyDecided(f"{reason}: run the pipeline with force_retrain=true to train it again")


@contextlib.contextmanager
def running(task: str, day: str, profile: str, overrides: list[str], state_dir: str) -> Iterator[tuple[Config, State]]:
    """What every component runs its step in: the run's config and state, with the step recorded in the
    day's status (`faults.failing_step`): a step that raises, config included, leaves `failed`/`rejected`."""
    check_cluster_settings()  # before anything is written: a missing service would swallow it
    state = State.from_env(state_dir or None)
    with failing_step(state, day, task):
        yield context(profile, overrides, state_dir)


def context(profile: str, overrides: list[str], state_dir: str) -> tuple[Config, State]:
    """What every pipeline component starts with: the run's config (a servable variant) and the state."""
    from cscnn.config import load_config

    check_servable((cfg := load_config(profile, overrides=list(overrides))).model.variant)
    return cfg, State.from_env(state_dir or None)


def _read_json(artifact: Any) -> dict[str, Any]:
    return json.loads(Path(artifact.path).read_text())


def _ref(data: dict[str, Any]):
    from cscnn.tools.model_registry import ModelRef

    return ModelRef(**data)


def _decision(artifact: Any):
    from cscnn.tools.gate import GateDecision

    return GateDecision.from_dict(_read_json(artifact))


def _validate(day: str, cfg: Config, state: State, landing: str, report: Any, summary: Any) -> None:
    result = steps.validate(Path(landing), day, cfg, state, Path(report.path))
    Path(summary.path).write_text(result.html())


def _version(day: str, cfg: Config, state: State, landing: str, data_version: Any) -> bool:
    versioned = steps.version(Path(landing), day, cfg, state)
    Path(data_version.path).write_text(json.dumps(versioned.to_dict(), default=str))
    data_version.metadata.update({"tag": versioned.tag, "commit": versioned.commit})
    return versioned.ready


def _refresh_embeddings(day: str, cfg: Config, state: State, table: Any) -> int:
    return steps.refresh_embeddings(day, cfg, state, Path(table.path)).refreshed


def _train_candidate(day: str, cfg: Config, state: State, gpus: int, candidate: Any) -> None:
    summary = steps.train_candidate(day, cfg, state, Path(candidate.path), pod_gpus=gpus)
    candidate.metadata.update({"fingerprint": summary.fingerprint, "val_auc": summary.val_auc})


def _evaluate(day: str, cfg: Config, state: State, candidate: Any, metrics: Any) -> dict:
    evaluation = steps.evaluate(Path(candidate.path), day, cfg, state)
    metrics.log_metric("candidate_auc", evaluation.candidate["auc"])
    if evaluation.champion is not None:
        metrics.log_metric("champion_auc", evaluation.champion["auc"])
    return evaluation.to_dict()


def _gate(day: str, cfg: Config, state: State, evaluation: dict, decision: Any, summary: Any) -> bool:
    result = steps.gate(Evaluation.from_dict(evaluation), day, cfg, state)
    Path(decision.path).write_text(json.dumps(result.to_dict(), indent=2))
    Path(summary.path).write_text(result.markdown())
    decision.metadata.update({"passed": result.passed, "reasons": result.reasons})
    return bool(result.passed)


def _register(
    day: str, cfg: Config, state: State, candidate: Any, validation: Any, data_version: Any, decision: Any,
    evaluation: dict, work: Any, roc: Any,
) -> dict:  # fmt: skip
    ref = steps.register(
        Path(candidate.path),
        day,
        Evaluation.from_dict(evaluation),
        _decision(decision),
        _read_json(data_version)["tag"],
        Path(validation.path),
        cfg,
        state,
        Path(work.path),
    )
    curve = json.loads((Path(work.path) / steps.ROC_POINTS_FILE).read_text())
    if curve["fpr"]:  # one class only on the held-out day: no curve
        roc.log_roc_curve(curve["fpr"], curve["tpr"], curve["threshold"])
    return ref.to_dict()


def _publish_table(day: str, cfg: Config, state: State, ref: dict, candidate: Any, table: Any) -> dict:
    return steps.publish_table(_ref(ref), Path(candidate.path), day, cfg, state, Path(table.path)).to_dict()


def _package(day: str, cfg: Config, state: State, ref: dict) -> dict:
    return steps.package(_ref(ref), day, cfg, state).to_dict()


def _promote(day: str, cfg: Config, state: State, ref: dict) -> dict:
    return steps.promote(_ref(ref), day, cfg, state).to_dict()


def _keep_champion(day: str, cfg: Config, state: State, decision: Any) -> dict:
    return steps.keep_champion(day, _decision(decision), cfg, state).to_dict()


_BODIES: dict[str, Callable[..., Any]] = {
    "validate": _validate,
    "version": _version,
    "refresh_embeddings": _refresh_embeddings,
    "train_candidate": _train_candidate,
    "evaluate": _evaluate,
    "gate": _gate,
    "register": _register,
    "publish_table": _publish_table,
    "package": _package,
    "promote": _promote,
    "keep_champion": _keep_champion,
}
