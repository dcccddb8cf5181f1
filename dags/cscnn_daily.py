"""The `cscnn_daily` Airflow DAG: a thin adapter over the Kubeflow pipeline `daily` (`kfp_pipelines/`).

Airflow owns *when* (schedule, retries, backfill, params in the UI); the pipeline owns *what runs*. This file
holds only the DAG's wiring and params; the task bodies are `cscnn.entrypoints.orchestration` (shared with
`cscnn daily run`), and the day's record is `cscnn.daily.status`. Both import only the standard library at
parse time; torch, MLflow, kfp and the rest are imported inside the tasks, at run time.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from cscnn import settings
from cscnn.entrypoints import notify, orchestration
from cscnn.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]  # relative landing/state paths are taken from the checkout
START_DATE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
# Retries of the pipeline task. `airflow dags test` waits out every retry delay in the foreground, so the local
# runner (`cscnn.entrypoints.airflow_setup.run_dag`) sets this to 0; a deployment keeps the default.
PIPELINE_RETRIES = settings.read("CSCNN_PIPELINE_RETRIES")
# How long `wait_for_landing` waits for the day's data (read at parse time; 0: fail at once, as the local runner
# sets it). A sensor in reschedule mode: between pokes it holds no worker slot.
LANDING_WAIT_S = settings.read("CSCNN_LANDING_WAIT_S")
LANDING_POKE_S = 300

DOC = """
# cscnn_daily: one day of the CSCNN loop

Runs the Kubeflow pipeline `daily` (`kfp_pipelines/daily.py`) for one day of click logs and waits:

validate, version, train, evaluate and gate a candidate, and, when it passes, ship it: the steps are the
table in `docs/daily_loop.md` (generated from `cscnn.daily.chain.STEPS`; each step is a task of the pipeline).

Without `KFP_HOST` it runs locally with `kfp.local`; with it, it submits to that Kubeflow Pipelines host.

* **Schedule**: daily; the run whose logical date is *D* starts when day *D* is over and processes day *D*.
  Catchup is off; run a range of days with `airflow backfill create` (see `dags/README.md`).
* **Params** (trigger form): run date, landing folder, profile, gate thresholds (empty: the config's value),
  training workers / nodes / GPUs per node (data-parallel DDP; nodes > 1 runs a Kubeflow Trainer TrainJob),
  force retrain (a day already promoted / not promoted is skipped without it), extra config overrides.
* **Landing**: `wait_for_landing` waits up to 6 hours (`$CSCNN_LANDING_WAIT_S` at parse time) for the
  day's impressions, poking every 5 minutes in reschedule mode (no worker slot held between pokes).
* **States**: a day already decided is not rerun: `trigger_pipeline` and `report` end *skipped*. A failed
  run's `report` message starts with its kind: `not landed`, `rejected` (the data), `bad configuration`,
  `failed` (a step broke). `$CSCNN_ALERT_WEBHOOK` set: each failed run POSTs that message there
  (`cscnn.entrypoints.notify`).
* **Retries**: `trigger_pipeline` retries twice, 10 minutes apart (`$CSCNN_PIPELINE_RETRIES` at parse time
  changes the count), except when the day has not landed, its data is rejected (validation, or a data error
  in any step) or the configuration is bad: those fail at once (retrying cannot fix the data, and a retrying
  run holds every later run back).
* **Where to look**: the `report` task runs after the pipeline task whatever its outcome; its XCom tab shows
  the day's outcome (key `outcome`, one line: status, gate decision and reasons, AUCs, model and data versions,
  data docs, the failed step and its error) and its log prints the same; `cscnn daily status --day D`; MLflow.
* **Landing**: the `landing` param, else `$CSCNN_LANDING`, else the folder `make demo` recorded in the state,
  else `data/small`. A missing folder fails at once; a day that has not landed is waited for (`wait_for_landing`).
"""

PARAM_NAMES = (
    "day",
    "landing",
    "profile",
    *orchestration.THRESHOLDS,
    *orchestration.TRAINING,
    "force_retrain",
    "overrides",
)


@dag(
    dag_id="cscnn_daily",
    dag_display_name="CSCNN daily: validate, retrain, gate, promote",
    description="Run the CSCNN daily Kubeflow pipeline for one day and report the gate decision.",
    doc_md=DOC,
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # days build on each other: day D's champion is the one day D+1 is gated against
    tags=["cscnn", "daily-loop"],
    default_args={"owner": "cscnn"},
    params={name: Param(**orchestration.PARAMS[name]) for name in PARAM_NAMES},
)
def cscnn_daily():
    @task.sensor(mode="reschedule", poke_interval=LANDING_POKE_S, timeout=max(LANDING_WAIT_S, 1))
    def wait_for_landing(params: dict[str, Any] | None = None, ds: str | None = None) -> bool:
        """Wait for the day's impressions in the landing folder, up to `$CSCNN_LANDING_WAIT_S` (6 h), holding no
        worker slot between pokes. A bad param or a landing folder with no impressions fails at once."""
        try:
            missing = orchestration.not_landed(params or {}, ds, os.environ, REPO_ROOT)
        except (ConfigError, orchestration.NotRetryable) as exc:
            raise AirflowFailException(orchestration.failure_message(exc)) from exc
        if missing and LANDING_WAIT_S <= 0:
            raise AirflowFailException(f"not landed: {missing}")
        if missing:
            print(f"waiting: {missing}", flush=True)
        return missing is None

    @task(
        retries=PIPELINE_RETRIES,
        retry_delay=dt.timedelta(minutes=10),
        execution_timeout=dt.timedelta(hours=6),
        pool=orchestration.STATE_POOL,
    )
    def trigger_pipeline(params: dict[str, Any] | None = None, ds: str | None = None) -> dict[str, Any]:
        """Run the Kubeflow pipeline `daily` for the day and wait (kfp.local, or the host in $KFP_HOST).
        A day that has not landed, a data or configuration error (validation lists the failed expectations)
        fail at once; other failures are retried. A day already decided is skipped unless `force_retrain` is set."""
        params = params or {}
        try:
            arguments = orchestration.daily_arguments(params, ds, os.environ, REPO_ROOT)
            force = bool(params.get("force_retrain"))
            result = orchestration.run_day("daily", arguments, force, "set force_retrain to train it again")
        except (ConfigError, orchestration.NotRetryable) as exc:
            raise AirflowFailException(orchestration.failure_message(exc)) from exc
        if result.get("skipped"):
            raise AirflowSkipException(f"not rerun: {result['skipped']}; set force_retrain to train it again")
        return result

    @task(trigger_rule=TriggerRule.ALL_DONE, on_failure_callback=notify.notify_failure)
    def report(params: dict[str, Any] | None = None, ds: str | None = None, ti=None) -> dict[str, Any]:
        """The day's outcome from its status, whether the pipeline task succeeded or failed: status, gate
        decision and reasons, AUCs, model and data versions, data docs, the failed step and its error. One XCom
        per field (`outcome`: all of it in one line), so the UI's XCom tab shows it without opening a log.
        Skipped when the pipeline task was (a decided day, not rerun); failed, with the kind first, when the run
        failed (the run's one failure alert: `notify.notify_failure`)."""
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=["trigger_pipeline"], run_ids=[ti.run_id])
        trigger_state = states.get(ti.run_id, {}).get("trigger_pipeline")
        summary, failure = orchestration.outcome(params or {}, ds, os.environ, REPO_ROOT, trigger_state)
        if failure or trigger_state == "skipped":
            for key, value in summary.items():  # what returning it would push (a dict: one XCom per key)
                ti.xcom_push(key, value)
        if failure:
            raise AirflowFailException(failure)  # the run stays failed: this task is its last
        if trigger_state == "skipped":
            raise AirflowSkipException(summary["outcome"])
        return summary

    wait_for_landing() >> trigger_pipeline() >> report()


cscnn_daily()
