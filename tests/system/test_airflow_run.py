"""One real `airflow dags test` run of the daily DAG (dags/cscnn_daily.py) through `cscnn airflow run-day`: a day
that succeeds, a rejected day and a day that has not landed, as the Airflow database and the task logs record them,
with the Kubeflow pipeline replaced by a fake (the real pipeline runs in tests/system/test_daily_pipeline.py).

Airflow reads AIRFLOW_HOME when it is first imported: `airflow_setup` points it at the state's own folder before
anything imports Airflow; nothing is written to ~/airflow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="apache-airflow not installed")

REPO = Path(__file__).resolve().parents[2]

FAKE_RUNNER = """
from cscnn.daily.status import mark
from cscnn.state import State


def run_pipeline(name, arguments, host=None):
    state, day = State.from_env(arguments["state_dir"]), arguments["day"]
    with open(f"{arguments['state_dir']}/calls.jsonl", "a") as log:
        log.write(__import__("json").dumps({"name": name, "arguments": arguments}) + "\\n")
    if day == "2026-01-05":  # the bad day: validation marks it and the pipeline run fails
        failure = {"table": "impressions", "expectation": "values_in_set", "column": "click", "details": "row 17"}
        mark(state, day, status="rejected", validation={"success": False, "failures": [failure], "docs": "d.html"})
        raise RuntimeError("validate failed")
    gate = {"passed": True, "candidate_auc": 0.71, "champion_auc": None, "champion_version": None, "reasons": []}
    mark(state, day, status="promoted", gate=gate, data_version="v-" + day, candidate_version="1", champion="1")
    return {"mode": "fake", "pipeline": name}
"""


def test_airflow_dags_test_runs_a_day_and_stops_on_a_rejected_one(tmp_path, monkeypatch, capfd):
    from cscnn.entrypoints import airflow_setup
    from cscnn.state import State

    fake = tmp_path / "fake" / "kfp_pipelines"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "runner.py").write_text(textwrap.dedent(FAKE_RUNNER))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("CSCNN_PROJECT_ROOT", str(REPO))  # this checkout's dags/, wherever cscnn-ctr is installed
    monkeypatch.chdir(tmp_path)  # `python -m airflow` puts the working directory first on sys.path
    state = State.from_env(tmp_path / "state")
    state.root.mkdir()
    landing = tmp_path / "landing"
    (landing / "impressions").mkdir(parents=True)
    for day in ("2026-01-04", "2026-01-05"):  # the fake pipeline reads nothing: the days only need to exist
        (landing / "impressions" / f"{day}.parquet").write_bytes(b"")
    state.remember_defaults(landing, "tiny")  # as `make demo` does: no landing param needed

    conf = {"auc_floor": 0.55, "overrides": ["train.epochs=1"]}
    started = dt.datetime.now(dt.UTC)
    assert airflow_setup.run_day("2026-01-04", conf=conf, state=state) == 0
    out = capfd.readouterr().out
    assert "day 2026-01-04: promoted" in out and "gate: PASSED; candidate AUC 0.7100" in out

    # Rejected: fails at once although the task has retries (a retry would wait 10 minutes and time out here).
    assert airflow_setup.run_dag("cscnn_daily", "2026-01-05", state=state, retries=2, timeout_s=120) != 0
    out = capfd.readouterr().out
    assert "rejected by data validation" in out and "impressions: values_in_set [click]: row 17" in out
    assert "rejected: day 2026-01-05" in out  # the report's failure (and the alert) names the kind first
    assert "ALERT [cscnn_daily] rejected: day 2026-01-05" in out  # the failure hook ran once, on `report`

    # Not landed: fails at once too (the local runner waits 0 s), before the pipeline, naming the folder and param.
    assert airflow_setup.run_dag("cscnn_daily", "2026-01-06", state=state, retries=2, timeout_s=120) != 0
    out = capfd.readouterr().out
    assert "not landed: day 2026-01-06 has not landed in" in out

    # What the UI shows: real run durations (not logical date -> now), and the outcome in the report's XCom.
    with contextlib.closing(sqlite3.connect(state.airflow_home / "airflow.db")) as db:
        runs = db.execute("SELECT logical_date, start_date, end_date FROM dag_run ORDER BY logical_date").fetchall()
        run_ids = [row[0] for row in db.execute("SELECT run_id FROM dag_run ORDER BY logical_date")]
        states = {
            (run_id[16:18], task): value
            for run_id, task, value in db.execute("SELECT run_id, task_id, state FROM task_instance")
        }
        outcomes = dict(
            db.execute(
                "SELECT substr(r.logical_date, 1, 10), x.value FROM xcom x JOIN dag_run r ON x.run_id = r.run_id"
                " AND x.dag_id = r.dag_id WHERE x.task_id = 'report' AND x.key = 'outcome'"
            ).fetchall()
        )
        notes = dict(
            db.execute(
                "SELECT substr(r.logical_date, 1, 10), n.content FROM dag_run_note n JOIN dag_run r"
                " ON n.dag_run_id = r.id"
            ).fetchall()
        )
    assert [run[0][:10] for run in runs] == ["2026-01-04", "2026-01-05", "2026-01-06"]
    for _, start, end in runs:
        seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
        assert start >= started.strftime("%Y-%m-%d %H:%M") and 0 < seconds < 300, (start, end)
    assert "day 2026-01-04: promoted | " in outcomes["2026-01-04"] and "gate: PASSED" in outcomes["2026-01-04"]
    assert "rejected" in outcomes["2026-01-05"]  # the report task ran after the failed pipeline task
    assert "day 2026-01-06 has not landed" in outcomes["2026-01-06"]
    # Each run's note (on the run's page in the UI) is its outcome, kind first: rejected reads as rejected.
    assert (
        notes["2026-01-04"].startswith("**day 2026-01-04: promoted**\n\n- ") and "- gate: PASSED" in notes["2026-01-04"]
    )
    assert notes["2026-01-05"].startswith("**day 2026-01-05: rejected**")
    assert notes["2026-01-06"].startswith("**not landed: day 2026-01-06 has not landed")
    # The runs list names the day each run processed; the three outcomes end in three different task states.
    assert run_ids == [f"manual__2026-01-0{d}T00:00:00+00:00" for d in (4, 5, 6)]
    assert {task: states[("04", task)] for task in ("wait_for_landing", "trigger_pipeline", "report")} == {
        "wait_for_landing": "success",
        "trigger_pipeline": "success",
        "report": "success",
    }
    assert (states[("05", "trigger_pipeline")], states[("05", "report")]) == ("failed", "failed")
    assert (states[("06", "wait_for_landing")], states[("06", "trigger_pipeline")]) == ("failed", "upstream_failed")
    # Each task's output is in the log file the UI reads (`dags test` itself writes none).
    logs = state.airflow_home / "logs" / "dag_id=cscnn_daily" / f"run_id={run_ids[1]}"
    assert "rejected by data validation" in (logs / "task_id=trigger_pipeline" / "attempt=1.log").read_text()
    assert "rejected: day 2026-01-05" in (logs / "task_id=report" / "attempt=1.log").read_text()

    # A rerun of a decided day is skipped, not a fresh success repeating "promoted".
    assert airflow_setup.run_day("2026-01-04", state=state) == 0
    assert "not rerun: day 2026-01-04 was already decided (promoted" in capfd.readouterr().out
    with contextlib.closing(sqlite3.connect(state.airflow_home / "airflow.db")) as db:
        rerun = dict(db.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", (run_ids[0],)))
    assert rerun == {"wait_for_landing": "success", "trigger_pipeline": "skipped", "report": "skipped"}

    calls = [json.loads(line) for line in (state.root / "calls.jsonl").read_text().splitlines()]
    assert [c["arguments"]["day"] for c in calls] == ["2026-01-04", "2026-01-05"]  # one try each, no rerun
    assert calls[0]["arguments"]["overrides"] == ["train.epochs=1", "gate.auc_floor=0.55"]
    assert calls[0]["arguments"]["state_dir"] == str(state.root)
    assert airflow_setup.init(state) == 0.0  # the database was migrated once
