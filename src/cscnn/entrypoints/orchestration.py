"""Run one day's Kubeflow pipeline and read back what it decided: the body of the Airflow DAGs' tasks and of
`cscnn daily run`, so the scheduler and the command line take the same path.

Cheap to import on purpose (standard library and `cscnn`'s standard-library-only modules): the DAG files
import it at parse time. `kfp_pipelines`, the config loader and everything heavy are imported when a run
starts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cscnn import settings
from cscnn.daily import status
from cscnn.dates import check_day
from cscnn.errors import ConfigError, CSCNNError
from cscnn.settings import DEFAULT_PROFILE, PROFILES
from cscnn.state import REGISTRY_REMOTE_ENV, State, check_cluster_settings

PIPELINES = ("daily", "embedding_refresh")  # kfp_pipelines.daily.PIPELINES
# Both pipelines write the same local state (DVC's git repository, MLflow's SQLite file): one Airflow pool slot,
# so a daily run and an embedding refresh never run at the same time. `airflow_setup` creates it.
STATE_POOL = "cscnn_state"
THRESHOLDS = {  # DAG param -> config key (cscnn.config.GateConfig)
    "auc_floor": "gate.auc_floor",
    "max_auc_drop": "gate.max_auc_drop",
    "max_category_drop": "gate.max_category_drop",
}
TRAINING = {  # DAG param -> config key (cscnn.config.TrainConfig): how the candidate trains
    "train_workers": "train.workers",
    "train_nodes": "train.nodes",
    "train_gpus": "train.gpus",
}


GATE_SECTION = "Gate thresholds (empty: the config's value)"
TRAIN_SECTION = "Training (empty: the config's value)"


def _threshold(title: str, meaning: str) -> dict[str, Any]:
    return {
        "default": None,
        "type": ["null", "number"],
        "minimum": 0,
        "maximum": 1,
        "title": title,
        "description": f"Empty: the config's value. Otherwise {meaning}.",
        "section": GATE_SECTION,
    }


# The DAGs' params (keyword arguments of airflow.sdk.Param), defined once next to the code that reads them.
PARAMS: dict[str, dict[str, Any]] = {
    "day": {
        "default": None,
        "type": ["null", "string"],
        "format": "date",
        "title": "Run date",
        "description": "Day of data to process (YYYY-MM-DD). Empty: the run's logical date.",
    },
    "refresh_day": {
        "default": None,
        "type": ["null", "string"],
        "format": "date",
        "title": "Day",
        "description": "Day whose catalogue to refresh (YYYY-MM-DD). Empty: the latest day that has landed.",
    },
    "landing": {
        "default": None,
        "type": ["null", "string"],
        "title": "Landing folder",
        "description": (
            "World folder the day's data lands in. Empty: $CSCNN_LANDING, else the folder the local set-up "
            "(`make demo`) recorded in the state, else data/small."
        ),
    },
    "profile": {
        "default": None,
        "type": ["null", "string"],
        "title": "Profile",
        "description": f"Config profile ({', '.join(PROFILES)}). Empty: $CSCNN_PROFILE, else {DEFAULT_PROFILE}.",
        "examples": list(PROFILES),
    },
    "auc_floor": _threshold("AUC floor", "the candidate's AUC on the eval day must reach this"),
    "max_auc_drop": _threshold("Max AUC drop", "the candidate may trail the champion by at most this"),
    "max_category_drop": _threshold("Max per-category AUC drop", "no category's AUC may drop by more than this"),
    "train_workers": {
        "default": None,
        "type": ["null", "integer"],
        "minimum": 1,
        "title": "Training workers",
        "description": "Data-parallel workers (DDP) per node; the result does not depend on it. Empty: 1.",
        "section": TRAIN_SECTION,
    },
    "train_nodes": {
        "default": None,
        "type": ["null", "integer"],
        "minimum": 1,
        "title": "Training nodes",
        "description": "More than 1: the train step runs as a Kubeflow Trainer TrainJob (cluster only). Empty: 1.",
        "section": TRAIN_SECTION,
    },
    "train_gpus": {
        "default": None,
        "type": ["null", "integer"],
        "minimum": 0,
        "title": "GPUs per training node",
        "description": "GPUs the training pod(s) request on a cluster (one worker per GPU). Empty: 1.",
        "section": TRAIN_SECTION,
    },
    # Optional in the trigger form: Airflow's form marks a param required unless its type allows null.
    "force_retrain": {
        "default": False,
        "type": ["boolean", "null"],
        "title": "Force retrain",
        "description": "Train again a day that was already promoted or not promoted (otherwise it is skipped).",
    },
    "overrides": {
        "default": [],
        "type": ["array", "null"],
        "items": {"type": "string"},
        "title": "Extra config overrides",
        "description": "One section.key=value per line, e.g. train.epochs=3 (threshold fields above win).",
    },
}


class NotRetryable(CSCNNError):
    """Retrying cannot help: the day's data was rejected by validation, or the configuration is bad."""


class DayRejected(NotRetryable):
    """This run's data validation rejected the day; nothing was versioned or trained."""


class NotLanded(NotRetryable):
    """The day's impressions are not in the landing folder (yet): waiting may help, retrying the run does not."""


def locations(params: Mapping[str, Any], env: Mapping[str, str], root: Path) -> dict[str, str]:
    """Landing folder, state folder and profile: a param wins, then $CSCNN_LANDING / $CSCNN_STATE /
    $CSCNN_PROFILE, then what the local set-up recorded in the state (`State.defaults`: `make demo` writes
    it), then the defaults (`data/small`, `.state`, `small`). Relative paths are taken from `root`."""
    state_env = settings.read("CSCNN_STATE", env)
    if settings.read(REGISTRY_REMOTE_ENV, env) and not state_env:  # a cluster: every step its own scratch
        state_dir, recorded = "", {}
    else:
        state_dir = str((root / (state_env or ".state")).resolve())
        recorded = State(Path(state_dir)).defaults()
    landing = params.get("landing") or settings.read("CSCNN_LANDING", env) or recorded.get("landing") or "data/small"
    return {
        "landing": str((root / landing).resolve()),
        "state_dir": state_dir,
        "profile": params.get("profile")
        or settings.read("CSCNN_PROFILE", env)
        or recorded.get("profile")
        or DEFAULT_PROFILE,
    }


def check_landed(landing: str, day: str) -> None:
    """Fail at once (NotRetryable) when the landing folder or the day's impressions file is missing: waiting
    ten minutes between retries cannot create them, and with `max_active_runs=1` a retrying run holds every
    later run back. The message names the folder and what to set."""
    from cscnn.data import schema

    folder = Path(landing)
    where = "the DAG param `landing` or $CSCNN_LANDING (`make demo` records its landing folder in the state)"
    if not (folder / schema.IMPRESSIONS_DIR).is_dir():
        raise NotRetryable(f"landing folder {folder} has no {schema.IMPRESSIONS_DIR}/ folder: set {where}")
    if not (folder / schema.IMPRESSIONS_DIR / f"{day}.parquet").is_file():
        landed = sorted(p.stem for p in (folder / schema.IMPRESSIONS_DIR).glob("*.parquet"))
        span = f"{landed[0]} .. {landed[-1]}" if landed else "none"
        raise NotLanded(
            f"day {day} has not landed in {folder} (days there: {span}): trigger with the `day` param set to a "
            f"landed day, or set {where}; clear the task once the data has landed"
        )


def config_overrides(params: Mapping[str, Any]) -> list[str]:
    """Extra `section.key=value` overrides first, then the threshold and training fields that are set (they win)."""
    extra = [item.strip() for item in params.get("overrides") or [] if item and item.strip()]
    for item in extra:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.epochs=3")
    fields = {**THRESHOLDS, **TRAINING}
    return extra + [f"{key}={params[name]}" for name, key in fields.items() if params.get(name) is not None]


def daily_arguments(params: Mapping[str, Any], ds: str | None, env: Mapping[str, str], root: Path) -> dict[str, Any]:
    """The arguments of the "daily" pipeline: the day is the `day` param, else the run's logical date (`ds`)."""
    arguments = {
        "day": check_day(params.get("day") or ds),
        **locations(params, env, root),
        "overrides": config_overrides(params),
    }
    if params.get("train_gpus") is not None:  # the train step's GPU request, set on its pod
        arguments["train_gpus"] = int(params["train_gpus"])
    return arguments


def refresh_arguments(params: Mapping[str, Any], env: Mapping[str, str], root: Path) -> dict[str, Any]:
    """The arguments of the "embedding_refresh" pipeline: the `day` param, else the latest landed day."""
    where = locations(params, env, root)
    return {"day": check_day(params.get("day") or latest_day(Path(where["landing"]))), **where}


def latest_day(landing: Path) -> str:
    from cscnn.data.io import list_days

    days = list_days(landing)
    if not days:
        raise NotRetryable(f"{landing}: no day of impressions has landed yet")
    return days[-1]


def _holding_the_state_lock(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Run under the state folder's lock (`cscnn.locks`: a second run waits, or fails naming the holder), after
    cleaning up what a dead run left half-made (`cscnn.daily.recovery`), Airflow pool or not."""

    @functools.wraps(run)
    def locked(pipeline: str, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        from cscnn import locks
        from cscnn.config import load_config
        from cscnn.daily.recovery import recover
        from cscnn.errors import ConfigError

        state = State.from_env(arguments["state_dir"])
        with locks.state_lock(state.root, f"{pipeline} {arguments['day']}") as lock:
            if lock.stale_previous:
                print(f"the previous run did not end cleanly: {locks.describe(lock.stale_previous)}", flush=True)
            try:
                name = load_config(arguments["profile"], overrides=arguments.get("overrides", [])).serve.model_name
            except ConfigError:
                name = None  # `run` refuses the config (NotRetryable)
            if name is not None:
                recover(state, name)
            return run(pipeline, arguments, *args, **kwargs)

    return locked


@_holding_the_state_lock
def run_day(pipeline: str, arguments: dict[str, Any], force: bool = False, skip_hint: str = "") -> dict[str, Any]:
    """Check the config, skip a decided day unless forced, run the pipeline and wait.

    Returns `{"arguments", "skipped"}` or `{"arguments", "run"}`. Raises NotRetryable for a bad config, a day
    that has not landed, or a day this run's validation rejected (with the failed expectations), RuntimeError
    for any other failure.
    """
    from cscnn.config import load_config
    from cscnn.daily import faults
    from cscnn.errors import ConfigError
    from kfp_pipelines.runner import run_pipeline

    day, state = arguments["day"], State.from_env(arguments["state_dir"])
    try:
        check_cluster_settings()
        load_config(arguments["profile"], overrides=arguments.get("overrides", []))
    except ConfigError as exc:
        raise NotRetryable(f"bad configuration (not retried): {exc}") from exc
    before = faults.reported(state, day)
    reason = status.skip_reason(before, force)
    if reason:
        print(f"skipped: {reason}" + (f"; {skip_hint}" if skip_hint else ""), flush=True)
        return {"arguments": arguments, "skipped": reason}
    if pipeline == "daily":
        check_landed(arguments["landing"], day)
    if pipeline == "daily":
        arguments = {**arguments, "force_retrain": force}  # the pipeline's own skip rule (steps.refuse_decided)
    print(f"running the {pipeline!r} pipeline with {arguments}", flush=True)
    try:
        result = run_pipeline(pipeline, arguments)
    except Exception as exc:
        raise run_failure(state, day, before, exc) from exc
    print(f"pipeline finished: {result}", flush=True)
    return {"arguments": arguments, "run": result}


def run_failure(state: State, day: str, before: status.DayRecord, exc: Exception) -> Exception:
    """What a failed pipeline run raises, from the day's record (`faults.record_run_failure` fills in a step
    that died without recording): DayRejected for rejected data and NotRetryable for a data or configuration
    error (Airflow fails the task at once), RuntimeError naming the failed step and its error otherwise."""
    from cscnn.daily import faults

    after = faults.record_run_failure(state, day, before, exc)
    at = f" at step {after.step}" if after.step else ""
    if status.rejected_by_this_run(before, after) and after.failures:
        docs = (after.validation or {}).get("docs") or "-"
        return DayRejected(
            f"day {day} rejected by data validation{at} (not retried; nothing was trained):\n"
            + "\n".join(status.format_failures(after))
            + f"\ndata docs: {docs}"
        )
    if status.rejected_by_this_run(before, after):
        return DayRejected(f"day {day} rejected: a data error{at} (not retried): {after.error}")
    if after.retryable is False:
        return NotRetryable(f"day {day} failed at step {after.step} (not retried): {after.error}")
    return RuntimeError(f"day {day} failed at step {after.step or '-'}: {after.error}")


def print_record(trigger: Mapping[str, Any]) -> dict[str, Any]:
    """Print the day's record for operators; return its summary (the report task's XCom)."""
    arguments = trigger["arguments"]
    from cscnn.daily import faults

    record = faults.reported(State.from_env(arguments["state_dir"]), arguments["day"])
    print(status.format_record(record), flush=True)
    return status.summary(record)


def not_landed(params: Mapping[str, Any], ds: str | None, env: Mapping[str, str], root: Path) -> str | None:
    """None when the run's day has landed, else why not (the DAG's landing sensor pokes this). A bad param or a
    landing folder with no impressions at all raises: waiting cannot fix a setting."""
    arguments = daily_arguments(params, ds, env, root)
    try:
        check_landed(arguments["landing"], arguments["day"])
    except NotLanded as exc:
        return str(exc)
    return None


def failure_message(exc: BaseException) -> str:
    """The one line an operator reads first, starting with the kind of failure (`notify.KINDS`): "not landed",
    "rejected" (the data: not retried), "bad configuration", else "failed"."""
    text = str(exc)
    if isinstance(exc, NotLanded):
        return f"not landed: {text}"
    if isinstance(exc, DayRejected):
        return f"rejected: {text}"
    if isinstance(exc, (ConfigError, ValueError)) or text.startswith("bad configuration"):
        return text if text.startswith("bad configuration") else f"bad configuration: {text}"
    return f"failed: {text}"


def outcome(
    params: Mapping[str, Any], ds: str | None, env: Mapping[str, str], root: Path, trigger_state: str | None
) -> tuple[dict[str, Any], str | None]:
    """What the DAG's report task shows whether the pipeline task succeeded or not: the day's summary with
    `outcome`, the report in one line (its XComs, readable in the UI's XCom tab without a log), and the failure
    message when the run failed (None when it succeeded or was skipped), starting with its kind
    (`failure_message`). A skipped run's outcome says the day was not rerun, not a fresh decision."""
    try:
        arguments = daily_arguments(params, ds, env, root)
        if trigger_state not in ("success", "skipped"):
            check_landed(arguments["landing"], arguments["day"])
    except (ConfigError, NotRetryable) as exc:
        message = failure_message(exc)
        print(message, flush=True)
        return {"day": params.get("day") or ds, "status": None, "outcome": " ".join(message.split())}, message
    from cscnn.daily import faults

    record = faults.reported(State.from_env(arguments["state_dir"]), arguments["day"])
    text = status.format_record(record)
    print(text, flush=True)
    line = " | ".join(line.strip() for line in text.splitlines())
    if trigger_state == "skipped":
        line = f"not rerun (already decided; set force_retrain to train it again): {line}"
    summary = {**status.summary(record), "outcome": line}
    if trigger_state in ("success", "skipped"):
        return summary, None
    kind = status.DayStatus.REJECTED if record.status == status.DayStatus.REJECTED else status.DayStatus.FAILED
    at = f" at step {record.step}" if record.step else ""
    why = record.error or "; ".join(f.strip() for f in status.format_failures(record)[:3]) or text.splitlines()[0]
    return summary, f"{kind}: day {arguments['day']}{at} (the pipeline task ended {trigger_state}): {why}"
