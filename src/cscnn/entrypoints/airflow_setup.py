"""An embedded Airflow inside the project's local state: AIRFLOW_HOME is `<state>/airflow`, SQLite, this
repository's `dags/` folder, no example DAGs, a small parallelism. Nothing is written to `~/airflow`.

    cscnn airflow env                  # `export` lines, for eval "$(cscnn airflow env)"
    cscnn airflow init                 # airflow db migrate (once per Airflow version) + the pool
    cscnn airflow run-day 2026-01-03   # airflow dags test cscnn_daily 2026-01-03; its exit code

`make demo` calls `run_day` for several days in a row. The environment also carries the project's
settings the tasks read at run time: CSCNN_STATE (always), CSCNN_LANDING and CSCNN_PROFILE (when set).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from cscnn import project
from cscnn.entrypoints.orchestration import STATE_POOL
from cscnn.state import State

DAILY_DAG = "cscnn_daily"
PARALLELISM = 4


def airflow_env(state: State | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) plus the settings of the embedded Airflow."""
    state = state or State.from_env()
    home = state.airflow_home
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(project.dags_dir()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(PARALLELISM),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "CSCNN_STATE": str(state.root),
            # DVC stage commands find `python` on PATH: this venv's, the one Airflow runs in.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "BENTOML_DO_NOT_TRACK": "True",
    }.items():
        env.setdefault(key, value)
    return env


def airflow_command(*args: str) -> list[str]:
    """The `airflow` CLI of this interpreter's environment."""
    return [sys.executable, "-m", "airflow", *args]


def init(state: State | None = None, quiet: bool = True) -> float:
    """`airflow db migrate` and the state pool, once per Airflow version (a stamp file says it was done).
    Returns the seconds it took (0.0 when already done)."""
    state = state or State.from_env()
    stamp = state.airflow_home / f".initialised-{metadata.version('apache-airflow')}"
    if stamp.is_file():
        return 0.0
    state.airflow_home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(state)
    started = time.perf_counter()
    output = subprocess.DEVNULL if quiet else None
    for args in (("db", "migrate"), ("pools", "set", STATE_POOL, "1", "CSCNN pipelines writing the local state")):
        subprocess.run(airflow_command(*args), env=env, check=True, stdout=output, stderr=output)
    stamp.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    return time.perf_counter() - started


def run_dag(
    dag_id: str,
    day: str,
    conf: Mapping | None = None,
    state: State | None = None,
    retries: int = 0,
    timeout_s: float | None = None,
    log_file: Path | None = None,
) -> int:
    """`airflow dags test DAG DAY` in a subprocess (no scheduler needed); its log goes to this console, or to
    `log_file` when given.
    `dags test` waits out retry delays in the foreground, hence no retries by default: a crash fails at once.
    Returns the exit code: 0 when the run succeeded. Past `timeout_s` the run is killed (TimeoutExpired)."""
    state = state or State.from_env()
    init(state)
    args = ["dags", "test", dag_id, day]
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    env = {**airflow_env(state), "CSCNN_PIPELINE_RETRIES": str(retries)}
    try:
        if log_file is None:
            return subprocess.run(airflow_command(*args), env=env, check=False, timeout=timeout_s).returncode
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "w") as log:
            return subprocess.run(
                airflow_command(*args), env=env, check=False, timeout=timeout_s, stdout=log, stderr=subprocess.STDOUT
            ).returncode
    finally:
        real_start_dates(state, dag_id)


def real_start_dates(state: State, dag_id: str) -> int:
    """Give the embedded database's `dags test` runs their real start: `airflow dags test DAG DAY` records the
    run as started at its logical date (Airflow 3.3, `DAG.test`), so the UI showed a demo run of a January day
    as lasting ~330 days. The real start is the run's `run_after` (when the command created it). Only runs
    created by `dags test` are touched. Returns the number of runs fixed."""
    database = state.airflow_home / "airflow.db"
    if not database.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        return db.execute(
            "UPDATE dag_run SET start_date = run_after WHERE dag_id = ? AND triggered_by = 'TEST'"
            " AND start_date = logical_date AND run_after > start_date",
            (dag_id,),
        ).rowcount


def run_day(day: str, conf: Mapping | None = None, state: State | None = None) -> int:
    """One day of the daily loop through Airflow (`cscnn_daily`); `conf` sets DAG params, e.g. thresholds."""
    return run_dag(DAILY_DAG, day, conf, state)


def export_lines(env: Mapping[str, str]) -> str:
    keys = sorted(k for k in env if k.startswith("AIRFLOW") or k in {"CSCNN_STATE", "PATH"})
    return "\n".join(f"export {key}={shlex.quote(env[key])}" for key in keys)
