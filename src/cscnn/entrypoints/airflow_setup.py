"""An embedded Airflow inside the project's local state: AIRFLOW_HOME is `<state>/airflow`, SQLite, this
repository's `dags/` folder, no example DAGs, a small parallelism. Nothing is written to `~/airflow`.

    cscnn airflow env                  # `export` lines, for eval "$(cscnn airflow env)"
    cscnn airflow init                 # airflow db migrate (once per Airflow version) + the pool
    cscnn airflow run-day 2026-01-03   # as `airflow dags test cscnn_daily 2026-01-03` (`dag_test`); its exit code

`make demo` calls `run_day` for several days in a row. The environment also carries the project's
settings the tasks read at run time: CSCNN_STATE (always), CSCNN_LANDING and CSCNN_PROFILE (when set).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import threading
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
    """One run of the DAG for `day` as `airflow dags test` runs it (no scheduler needed; `dag_test` names the
    run after the day), its output to this console, or to `log_file` when given, and cut into the per-task log
    files the UI shows (`write_task_logs`). No retries and no wait for the data to land by default: `dags test`
    waits out retry delays and sensor pokes in the foreground, so a crash or a missing day fails at once.
    Returns the exit code: 0 when the run succeeded. Past `timeout_s` the run is killed (TimeoutExpired)."""
    state = state or State.from_env()
    init(state)
    command = [sys.executable, "-m", "cscnn.entrypoints.dag_test", dag_id, day]
    if conf:
        command.append(json.dumps(dict(conf)))
    env = {**airflow_env(state), "CSCNN_PIPELINE_RETRIES": str(retries), "CSCNN_LANDING_WAIT_S": "0"}
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        sink = sys.stdout
        if log_file is not None:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            sink = stack.enter_context(open(log_file, "w"))
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tee = threading.Thread(target=_tee, args=(proc.stdout, sink, lines), daemon=True)
        tee.start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            tee.join(timeout=30)
            write_task_logs(state, dag_id, lines)
    return code


def _tee(stream, sink, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
        sink.write(line)
        sink.flush()


TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
RUN_LINE = re.compile(r"^\[cscnn\] run (\S+) of ")


def write_task_logs(state: State, dag_id: str, lines: list[str]) -> list[Path]:
    """Give a `dags test` run the task logs the UI reads: `DAG.test` runs each task in its own process and
    writes no log file, so its output is cut at each task's start line and written where Airflow's file task
    handler looks (`<AIRFLOW_HOME>/logs/dag_id=../run_id=../task_id=../attempt=N.log`, the default template).
    The tasks of a `dags test` run run one after another, so each piece is exactly one task's output."""
    run_id = next((m.group(1) for line in lines if (m := RUN_LINE.match(line))), None)
    if run_id is None:
        return []
    pieces: dict[tuple[str, int], list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if match := TASK_START.search(line):
            current = pieces.setdefault((match.group(1), int(match.group(2))), [])
        if current is not None:
            current.append(line)
    tries = _try_numbers(state, dag_id, run_id)
    written = []
    for (task_id, map_index), text in pieces.items():
        folder = state.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"attempt={tries.get(task_id, 1)}.log"
        path.write_text("".join(text))
        written.append(path)
    return written


def _try_numbers(state: State, dag_id: str, run_id: str) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(state.airflow_home / "airflow.db", timeout=30)) as db:
        rows = db.execute(
            "SELECT task_id, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ).fetchall()
    return {task_id: max(int(tries or 1), 1) for task_id, tries in rows}


def run_day(day: str, conf: Mapping | None = None, state: State | None = None) -> int:
    """One day of the daily loop through Airflow (`cscnn_daily`); `conf` sets DAG params, e.g. thresholds."""
    return run_dag(DAILY_DAG, day, conf, state)


def export_lines(env: Mapping[str, str]) -> str:
    keys = sorted(k for k in env if k.startswith("AIRFLOW") or k in {"CSCNN_STATE", "PATH"})
    return "\n".join(f"export {key}={shlex.quote(env[key])}" for key in keys)
