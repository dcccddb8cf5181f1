"""The two Airflow DAGs of the daily loop, thin adapters over the Kubeflow pipelines in `kfp_pipelines/`.

Airflow owns *when* (schedule, retries, backfill, params in the UI); the pipeline owns *what runs*. Top-level
code is cheap on purpose: only `airflow.sdk` and the standard library are imported here; `cscnn`, `kfp`,
torch and MLflow are imported inside the tasks, at run time. The pure helpers (`pipeline_arguments`,
`skip_reason`, `format_report`, ...) hold the logic and are unit-tested without Airflow's database.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANDING = REPO_ROOT / "data" / "small"
DEFAULT_STATE = REPO_ROOT / ".state"
DEFAULT_PROFILE = "small"
# Both pipelines write the same local state (DVC's git repository, MLflow's SQLite file): one slot, so a daily
# run and an embedding refresh never run at the same time. `cscnn.entrypoints.airflow_setup` creates it.
STATE_POOL = "cscnn_state"
THRESHOLDS = {  # DAG param -> config key (cscnn.config.GateConfig)
    "auc_floor": "gate.auc_floor",
    "max_auc_drop": "gate.max_auc_drop",
    "max_category_drop": "gate.max_category_drop",
}
DECIDED = ("promoted", "not_promoted")  # a day with one of these statuses is done; rerun with force_retrain
START_DATE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
# Retries of the pipeline tasks. `airflow dags test` waits out every retry delay in the foreground, so the local
# runner (`cscnn.entrypoints.airflow_setup.run_dag`) sets this to 0; a deployment keeps the default.
PIPELINE_RETRIES = int(os.environ.get("CSCNN_PIPELINE_RETRIES", "2"))


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers: params and environment -> pipeline arguments, day status -> report text
# ---------------------------------------------------------------------------------------------------------------


def locations(params: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Landing folder, state folder and profile: a param wins, then $CSCNN_LANDING / $CSCNN_STATE /
    $CSCNN_PROFILE, then the repository defaults. Relative paths are taken from the repository root."""
    landing = params.get("landing") or env.get("CSCNN_LANDING") or DEFAULT_LANDING
    state_dir = env.get("CSCNN_STATE") or DEFAULT_STATE
    return {
        "landing": str((REPO_ROOT / landing).resolve()),
        "state_dir": str((REPO_ROOT / state_dir).resolve()),
        "profile": params.get("profile") or env.get("CSCNN_PROFILE") or DEFAULT_PROFILE,
    }


def config_overrides(params: Mapping[str, Any]) -> list[str]:
    """Extra `section.key=value` overrides first, then the threshold fields that are set (they win)."""
    extra = [item.strip() for item in params.get("overrides") or [] if item and item.strip()]
    for item in extra:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. train.epochs=3")
    thresholds = [f"{key}={params[name]}" for name, key in THRESHOLDS.items() if params.get(name) is not None]
    return extra + thresholds


def check_day(day: str | None) -> str:
    if not day:
        raise ValueError("no run date: set the 'day' param or run with a logical date")
    try:
        if dt.date.fromisoformat(day).isoformat() == day:
            return day
    except ValueError:
        pass
    raise ValueError(f"run date {day!r} is not a YYYY-MM-DD date")


def pipeline_arguments(params: Mapping[str, Any], ds: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """The arguments of the "daily" pipeline: the day is the `day` param, else the run's logical date (`ds`)."""
    return {
        "day": check_day(params.get("day") or ds),
        **locations(params, env),
        "overrides": config_overrides(params),
    }


def skip_reason(status: Mapping[str, Any], force: bool) -> str | None:
    """A day that already ended in a gate decision is not run again unless forced (`force_retrain`)."""
    if force or status.get("status") not in DECIDED:
        return None
    return f"day {status.get('day')} was already decided ({status['status']} at {status.get('updated', '?')})"


def rejected_by_validation(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """This run's validation rejected the day (not a stale mark from an earlier run): never transient."""
    return after.get("status") == "rejected" and after.get("updated") != before.get("updated")


def format_failures(validation: Mapping[str, Any]) -> list[str]:
    return [
        f"  {f.get('table')}: {f.get('expectation')}"
        + (f" [{f['column']}]" if f.get("column") else "")
        + (f": {f['details']}" if f.get("details") else "")
        for f in validation.get("failures") or []
    ]


def format_report(status: Mapping[str, Any]) -> str:
    """What operators read in the report task's log: decision, AUCs, model and data versions, data docs."""
    lines = [f"day {status.get('day')}: {status.get('status', 'no status recorded')}"]
    validation = status.get("validation") or {}
    if validation:
        verdict = "passed" if validation.get("success") else "FAILED"
        lines.append(f"validation: {verdict}; data docs: {validation.get('docs')}")
        lines += format_failures(validation)
    lines.append(f"data version: {status.get('data_version') or '-'}")
    if status.get("status") == "waiting_for_history":
        lines.append(f"history: {status.get('history_days')} day(s) versioned, not enough to train a candidate yet")
    refresh = status.get("refresh")
    if refresh:
        lines.append(
            f"embedding refresh: {refresh.get('refreshed', 0)} new item(s)"
            + (f" by champion v{refresh['version']}" if refresh.get("version") else f" ({refresh.get('skipped')})")
        )
    gate = status.get("gate")
    if gate:
        lines.append(
            f"gate: {'PASSED' if gate.get('passed') else 'FAILED'}; candidate AUC {_auc(gate.get('candidate_auc'))}, "
            f"champion AUC {_auc(gate.get('champion_auc'))}"
            + (f" (v{gate['champion_version']})" if gate.get("champion_version") else "")
        )
        lines += [f"  reason: {reason}" for reason in gate.get("reasons") or []]
    if status.get("candidate_version"):
        lines.append(f"candidate: model version {status['candidate_version']} (MLflow run {status.get('mlflow_run')})")
    if "champion" in status:
        lines.append(f"champion: {'v' + str(status['champion']) if status['champion'] else 'none yet'}")
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    return "\n".join(lines)


def summary(status: Mapping[str, Any]) -> dict[str, Any]:
    """The report task's XCom: the few fields a dashboard or a downstream DAG wants."""
    gate = status.get("gate") or {}
    return {
        "day": status.get("day"),
        "status": status.get("status"),
        "gate_passed": gate.get("passed"),
        "candidate_auc": gate.get("candidate_auc"),
        "champion_auc": gate.get("champion_auc"),
        "candidate_version": status.get("candidate_version"),
        "champion": status.get("champion"),
        "data_version": status.get("data_version"),
        "data_docs": (status.get("validation") or {}).get("docs"),
    }


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# ---------------------------------------------------------------------------------------------------------------
# Task bodies shared by both DAGs (imports of the project happen here, at run time)
# ---------------------------------------------------------------------------------------------------------------


def _run(pipeline: str, arguments: dict[str, Any], force: bool, skip_hint: str) -> dict[str, Any]:
    """Check the config, run the pipeline and wait; a rejected day or a bad config fails without a retry."""
    from cscnn.config import load_config
    from cscnn.daily.steps import read_status
    from cscnn.errors import ConfigError
    from cscnn.state import State
    from kfp_pipelines.runner import run_pipeline

    day, state = arguments["day"], State.from_env(arguments["state_dir"])
    try:
        load_config(arguments["profile"], overrides=arguments.get("overrides", []))
    except ConfigError as exc:
        raise AirflowFailException(f"bad configuration (not retried): {exc}") from exc
    before = read_status(state, day)
    reason = skip_reason(before, force)
    if reason:
        print(f"skipped: {reason}; {skip_hint}", flush=True)
        return {"arguments": arguments, "skipped": reason}
    print(f"running the {pipeline!r} pipeline with {arguments}", flush=True)
    try:
        result = run_pipeline(pipeline, arguments)
    except Exception as exc:
        after = read_status(state, day)
        if rejected_by_validation(before, after):
            failures = "\n".join(format_failures(after.get("validation") or {}))
            docs = (after.get("validation") or {}).get("docs")
            raise AirflowFailException(
                f"day {day} rejected by data validation (not retried; nothing was trained):\n{failures}\n"
                f"data docs: {docs}"
            ) from exc
        raise
    print(f"pipeline finished: {result}", flush=True)
    return {"arguments": arguments, "run": result}


def _report(trigger: dict[str, Any]) -> dict[str, Any]:
    from cscnn.daily.steps import read_status
    from cscnn.state import State

    arguments = trigger["arguments"]
    status = read_status(State.from_env(arguments["state_dir"]), arguments["day"])
    print(format_report(status), flush=True)
    return summary(status)


# ---------------------------------------------------------------------------------------------------------------
# cscnn_daily
# ---------------------------------------------------------------------------------------------------------------

DAILY_DOC = """
# cscnn_daily: one day of the CSCNN loop

Runs the Kubeflow pipeline `daily` (`kfp_pipelines/daily.py`) for one day of click logs and waits:

validate (Great Expectations) → version (DVC) → refresh embeddings → train a candidate → evaluate candidate
and champion on the same day → gate → register (MLflow alias `challenger`) → [gate passed] full embedding
table → package and smoke-check the service → promote (alias `champion`).

Without `KFP_HOST` it runs locally with `kfp.local`; with it, it submits to that Kubeflow Pipelines host.

* **Schedule**: daily; the run whose logical date is *D* starts when day *D* is over and processes day *D*.
  Catchup is off; run a range of days with `airflow backfill create` (see `dags/README.md`).
* **Params** (trigger form): run date, landing folder, profile, gate thresholds (empty: the config's value),
  force retrain (a day already promoted / not promoted is skipped without it), extra config overrides.
* **Retries**: `trigger_pipeline` retries twice, 10 minutes apart (`$CSCNN_PIPELINE_RETRIES` at parse time
  changes the count), except when the day fails data validation or the configuration is bad: those fail at
  once (retrying cannot fix the data).
* **Where to look**: the `report` task's log (gate decision, AUCs, model version, data version, data docs);
  `cscnn daily status --day D`; the MLflow UI.
"""

GATE_SECTION = "Gate thresholds (empty: the config's value)"


def threshold_param(title: str, meaning: str) -> Param:
    """A gate threshold in [0, 1]; empty keeps the config's value (the param's key is the GateConfig field)."""
    return Param(
        None,
        type=["null", "number"],
        minimum=0,
        maximum=1,
        title=title,
        description=f"Empty: the config's value. Otherwise {meaning}.",
        section=GATE_SECTION,
    )


def landing_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        title="Landing folder",
        description="World folder the day's data lands in. Empty: $CSCNN_LANDING, else data/small.",
    )


def profile_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        title="Profile",
        description="Config profile (tiny, small, demo, bench). Empty: $CSCNN_PROFILE, else small.",
        examples=["tiny", "small", "demo", "bench"],
    )


@dag(
    dag_id="cscnn_daily",
    dag_display_name="CSCNN daily: validate, retrain, gate, promote",
    description="Run the CSCNN daily Kubeflow pipeline for one day and report the gate decision.",
    doc_md=DAILY_DOC,
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # days build on each other: day D's champion is the one day D+1 is gated against
    tags=["cscnn", "daily-loop"],
    default_args={"owner": "cscnn"},
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Run date",
            description="Day of data to process (YYYY-MM-DD). Empty: the run's logical date.",
        ),
        "landing": landing_param(),
        "profile": profile_param(),
        "auc_floor": threshold_param("AUC floor", "the candidate's AUC on the eval day must reach this"),
        "max_auc_drop": threshold_param("Max AUC drop", "the candidate may trail the champion by at most this"),
        "max_category_drop": threshold_param(
            "Max per-category AUC drop", "no category's AUC may drop by more than this"
        ),
        "force_retrain": Param(
            False,
            type="boolean",
            title="Force retrain",
            description="Train again a day that was already promoted or not promoted (otherwise it is skipped).",
        ),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Extra config overrides",
            description="One section.key=value per line, e.g. train.epochs=3 (threshold fields above win).",
        ),
    },
)
def cscnn_daily():
    @task(
        retries=PIPELINE_RETRIES,
        retry_delay=dt.timedelta(minutes=10),
        execution_timeout=dt.timedelta(hours=6),
        pool=STATE_POOL,
    )
    def trigger_pipeline(params: dict[str, Any] | None = None, ds: str | None = None) -> dict[str, Any]:
        """Run the Kubeflow pipeline `daily` for the day and wait (kfp.local, or the host in $KFP_HOST).
        A day rejected by data validation fails at once, listing the failed expectations; other failures are
        retried. A day already decided is skipped unless `force_retrain` is set."""
        params = params or {}
        try:
            arguments = pipeline_arguments(params, ds, os.environ)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        return _run("daily", arguments, bool(params.get("force_retrain")), "set force_retrain to train it again")

    @task
    def report(trigger: dict[str, Any]) -> dict[str, Any]:
        """Print the day's outcome from its status file: gate decision and reasons, candidate and champion AUC,
        model versions, data version and the data docs path."""
        return _report(trigger)

    report(trigger_pipeline())


# ---------------------------------------------------------------------------------------------------------------
# cscnn_embedding_refresh
# ---------------------------------------------------------------------------------------------------------------

REFRESH_DOC = """
# cscnn_embedding_refresh: embed new ads between retrains

Runs the Kubeflow pipeline `embedding_refresh`: validate and version the day, then compute visual vectors
for the ads the champion's embedding table lacks, with the champion's CNN (a GPU node on a cluster), and
attach the extended table to the champion. No training, no gate; `champion` does not move.

* **Schedule**: every 6 hours (00:00, 06:00, 12:00, 18:00 UTC), no catchup. New ads can be served before
  the next retrain; when nothing is new, the run is a cheap no-op.
* **Day**: the `day` param, else the latest day in the landing folder. A day `cscnn_daily` already decided is
  skipped: the daily run refreshed its embeddings (and a new champion gets a full table).
* Shares the `cscnn_state` pool (one slot) with `cscnn_daily`: the two never write the state at once.
"""


def latest_day(landing: str) -> str:
    from cscnn.data.io import list_days

    days = list_days(Path(landing))
    if not days:
        raise AirflowFailException(f"{landing}: no day of impressions has landed yet")
    return days[-1]


@dag(
    dag_id="cscnn_embedding_refresh",
    dag_display_name="CSCNN embedding refresh: new ads, champion CNN",
    description="Embed newly arrived ads with the champion's CNN between retrains.",
    doc_md=REFRESH_DOC,
    schedule=CronTriggerTimetable("0 */6 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["cscnn", "daily-loop"],
    default_args={"owner": "cscnn"},
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day",
            description="Day whose catalogue to refresh (YYYY-MM-DD). Empty: the latest day that has landed.",
        ),
        "landing": landing_param(),
        "profile": profile_param(),
    },
)
def cscnn_embedding_refresh():
    @task(
        retries=PIPELINE_RETRIES,
        retry_delay=dt.timedelta(minutes=5),
        execution_timeout=dt.timedelta(hours=2),
        pool=STATE_POOL,
    )
    def trigger_pipeline(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the Kubeflow pipeline `embedding_refresh` for the day and wait."""
        params = params or {}
        where = locations(params, os.environ)
        try:
            day = check_day(params.get("day") or latest_day(where["landing"]))
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        return _run("embedding_refresh", {"day": day, **where}, False, "cscnn_daily refreshed its embeddings")

    @task
    def report(trigger: dict[str, Any]) -> dict[str, Any]:
        """Print how many new ads were embedded, by which champion version, and the day's status."""
        return _report(trigger)

    report(trigger_pipeline())


cscnn_daily()
cscnn_embedding_refresh()
