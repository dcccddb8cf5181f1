"""The Airflow DAGs (dags/cscnn_daily.py): they parse cleanly and cheaply (no DB, no heavy imports), have the
intended structure, map params to pipeline arguments correctly, and one real `airflow dags test` run succeeds
(and one fails on a rejected day) with the Kubeflow pipeline replaced by a fake.

Airflow reads AIRFLOW_HOME when it is first imported, so every test here points it at a temporary folder
before importing anything from Airflow; nothing is written to ~/airflow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cscnn.daily import status
from cscnn.entrypoints import orchestration
from cscnn.errors import ConfigError

# Not `importorskip`: importing Airflow here, before AIRFLOW_HOME is set, would create ~/airflow.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="apache-airflow not installed")

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
HEAVY = ("kfp", "kfp_pipelines", "torch", "mlflow", "great_expectations", "dvc", "bentoml", "pandas", "numpy")
# What the DAG files may import of the project at parse time: standard-library-only modules.
CHEAP_CSCNN = {
    "cscnn",
    "cscnn.daily",
    "cscnn.daily.status",
    "cscnn.dates",
    "cscnn.entrypoints",
    "cscnn.entrypoints.notify",
    "cscnn.entrypoints.orchestration",
    "cscnn.settings",
    "cscnn.errors",
    "cscnn.files",
    "cscnn.state",
}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        mp.delenv("CSCNN_PIPELINE_RETRIES", raising=False)
        yield home


@pytest.fixture(scope="module")
def dagbag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


# ---------------------------------------------------------------------------------------------------------------
# Parsing: no import errors, no database, no heavy imports
# ---------------------------------------------------------------------------------------------------------------

PARSE_PROBE = """
import json, sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine

queries = []
event.listen(Engine, "before_cursor_execute", lambda *args, **kwargs: queries.append(args[2]))
from airflow.dag_processing.dagbag import DagBag

started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
    "queries": queries,
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(","))),
    "cscnn": sorted(m for m in sys.modules if m == "cscnn" or m.startswith("cscnn.")),
    "seconds": time.perf_counter() - started,
}))
"""


def test_dag_folder_parses_without_errors_db_queries_or_heavy_imports(tmp_path):
    # A fresh interpreter (clean sys.modules) whose Airflow database does not even exist: parsing must not need it.
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'missing' / 'airflow.db'}",
    }
    out = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(DAGS), ",".join(HEAVY)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["import_errors"] == {}
    assert result["dag_ids"] == ["cscnn_daily", "cscnn_embedding_refresh"]
    assert result["queries"] == []
    assert result["heavy"] == []
    assert set(result["cscnn"]) <= CHEAP_CSCNN, set(result["cscnn"]) - CHEAP_CSCNN
    assert result["seconds"] < 5, f"parsing the dags folder took {result['seconds']:.1f} s"


# ---------------------------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------------------------


def test_daily_dag_structure(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.dags["cscnn_daily"]
    assert set(dag.task_ids) == {"wait_for_landing", "trigger_pipeline", "report"}
    wait, trigger, report = dag.get_task("wait_for_landing"), dag.get_task("trigger_pipeline"), dag.get_task("report")
    assert trigger.upstream_task_ids == {"wait_for_landing"} and report.upstream_task_ids == {"trigger_pipeline"}
    # The long wait for the data holds no worker slot: a sensor in reschedule mode, hours of timeout.
    assert wait.mode == "reschedule" and wait.timeout >= 3600 and wait.poke_interval >= 60
    assert wait.pool != orchestration.STATE_POOL
    assert report.on_failure_callback and report.trigger_rule == "all_done"
    assert isinstance(dag.timetable, CronDataIntervalTimetable)  # logical date D = the data day, run after D
    assert dag.timetable.expression == "0 0 * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert trigger.retries == 2 and trigger.retry_delay.total_seconds() > 0
    assert trigger.pool == orchestration.STATE_POOL
    assert report.retries == 0
    params = dag.params.dump()
    assert params == {
        "day": None,
        "landing": None,
        "profile": None,
        "auc_floor": None,
        "max_auc_drop": None,
        "max_category_drop": None,
        "train_workers": None,
        "train_nodes": None,
        "train_gpus": None,
        "force_retrain": False,
        "overrides": [],
    }
    # Optional params are optional in the trigger form: Airflow's form requires a param whose type excludes null.
    types = {name: dag.params.get_param(name).schema["type"] for name in params}
    assert all("null" in kinds for kinds in types.values()), types
    dag.params.validate()  # the defaults themselves are valid
    assert dag.doc_md.lstrip().startswith("# cscnn_daily")
    assert trigger.doc_md and report.doc_md


def test_refresh_dag_structure(dagbag):
    from airflow.sdk import CronTriggerTimetable

    dag = dagbag.dags["cscnn_embedding_refresh"]
    assert set(dag.task_ids) == {"trigger_pipeline", "report"}
    assert dag.get_task("report").upstream_task_ids == {"trigger_pipeline"}
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 */6 * * *"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.get_task("trigger_pipeline").pool == orchestration.STATE_POOL
    assert set(dag.params.dump()) == {"day", "landing", "profile"}
    assert dag.doc_md.lstrip().startswith("# cscnn_embedding_refresh")


def test_dags_survive_serialization(dagbag):
    """The scheduler and the UI only ever see the serialized DAG."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id in ("cscnn_daily", "cscnn_embedding_refresh"):
        dag = dagbag.dags[dag_id]
        restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert restored.params.dump() == dag.params.dump()
        assert restored.doc_md == dag.doc_md


def test_setup_creates_the_pool_the_dags_use():
    from cscnn import project
    from cscnn.entrypoints import airflow_setup

    assert airflow_setup.STATE_POOL == orchestration.STATE_POOL
    assert project.dags_dir() == DAGS


# ---------------------------------------------------------------------------------------------------------------
# Params -> pipeline arguments (pure functions, no Airflow database)
# ---------------------------------------------------------------------------------------------------------------

NO_PARAMS = {
    "day": None,
    "landing": None,
    "profile": None,
    "auc_floor": None,
    "max_auc_drop": None,
    "max_category_drop": None,
    "train_workers": None,
    "train_nodes": None,
    "train_gpus": None,
    "force_retrain": False,
    "overrides": [],
}


def test_defaults_come_from_the_logical_date_and_the_repository(tmp_path):
    args = orchestration.daily_arguments(NO_PARAMS, "2026-01-03", {"CSCNN_STATE": str(tmp_path)}, REPO)
    assert args == {
        "day": "2026-01-03",
        "landing": str(REPO / "data" / "small"),
        "state_dir": str(tmp_path),
        "profile": "small",
        "overrides": [],
    }


def test_in_cluster_mode_the_pipeline_gets_no_state_folder(tmp_path):
    """With a data registry remote (cluster mode) and no CSCNN_STATE, the steps get state_dir "": each works in
    a scratch folder of its own, and the day's record is read from the tracking server, not from a folder."""
    env = {"CSCNN_DATA_REGISTRY_REMOTE": "https://git.example.com/registry.git", "CSCNN_LANDING": str(tmp_path)}
    args = orchestration.daily_arguments(NO_PARAMS, "2026-01-03", env, REPO)
    assert args["state_dir"] == "" and args["landing"] == str(tmp_path)
    explicit = orchestration.daily_arguments(NO_PARAMS, "2026-01-03", {**env, "CSCNN_STATE": str(tmp_path)}, REPO)
    assert explicit["state_dir"] == str(tmp_path)


def test_the_landing_the_local_set_up_recorded_is_the_default(tmp_path):
    from cscnn.state import State

    env = {"CSCNN_STATE": str(tmp_path / "st")}
    State.from_env(env["CSCNN_STATE"]).remember_defaults(tmp_path / "demo-world", "demo")  # what `make demo` does
    args = orchestration.daily_arguments(NO_PARAMS, "2026-01-03", env, REPO)
    assert (args["landing"], args["profile"]) == (str(tmp_path / "demo-world"), "demo")
    env["CSCNN_LANDING"] = str(tmp_path / "env-world")  # the environment still wins, and a param over it
    assert orchestration.daily_arguments(NO_PARAMS, "2026-01-03", env, REPO)["landing"] == env["CSCNN_LANDING"]
    (tmp_path / "st" / "defaults.json").write_text("{broken")
    with pytest.raises(ConfigError, match=r"defaults\.json: unreadable"):
        orchestration.daily_arguments(NO_PARAMS, "2026-01-03", env, REPO)


def test_a_missing_landing_or_day_fails_at_once_naming_what_to_set(tmp_path, tiny_world):
    with pytest.raises(
        orchestration.NotRetryable, match=r"no-such-folder has no impressions/ folder: set the DAG param `landing`"
    ):
        orchestration.check_landed(str(tmp_path / "no-such-folder"), "2026-01-03")
    days = sorted(p.stem for p in (tiny_world / "impressions").glob("*.parquet"))
    with pytest.raises(
        orchestration.NotRetryable, match=rf"day 2030-01-01 has not landed in .*days there: {days[0]} \.\. {days[-1]}"
    ):
        orchestration.check_landed(str(tiny_world), "2030-01-01")
    orchestration.check_landed(str(tiny_world), days[0])  # landed: no error
    arguments = {"day": "2030-01-01", "landing": str(tiny_world), "state_dir": str(tmp_path / "st"), "profile": "tiny"}
    with pytest.raises(orchestration.NotRetryable, match="has not landed"):  # before any pipeline runs
        orchestration.run_day("daily", arguments)


def test_params_win_over_environment_which_wins_over_defaults(tmp_path):
    env = {"CSCNN_LANDING": str(tmp_path / "env-world"), "CSCNN_STATE": str(tmp_path / "st"), "CSCNN_PROFILE": "tiny"}
    args = orchestration.daily_arguments(NO_PARAMS, "2026-01-03", env, REPO)
    assert (args["landing"], args["state_dir"], args["profile"]) == (env["CSCNN_LANDING"], env["CSCNN_STATE"], "tiny")
    params = {**NO_PARAMS, "day": "2026-01-05", "landing": "data/other", "profile": "bench"}
    args = orchestration.daily_arguments(params, "2026-01-03", env, REPO)
    assert args["day"] == "2026-01-05"
    assert args["landing"] == str(REPO / "data" / "other")  # relative paths are taken from the repository root
    assert args["profile"] == "bench"
    assert args["state_dir"] == env["CSCNN_STATE"]  # the state is not a param: one state per deployment


def test_training_params_become_overrides_and_the_gpu_request():
    from cscnn.config import load_config

    params = {**NO_PARAMS, "train_workers": 2, "train_nodes": 3, "train_gpus": 4}
    args = orchestration.daily_arguments(params, "2026-01-03", {}, REPO)
    assert args["overrides"] == ["train.workers=2", "train.nodes=3", "train.gpus=4"]
    assert args["train_gpus"] == 4  # the pipeline's train step requests them
    cfg = load_config("tiny", overrides=args["overrides"])
    assert (cfg.train.workers, cfg.train.nodes, cfg.train.gpus) == (2, 3, 4)
    assert "train_gpus" not in orchestration.daily_arguments(NO_PARAMS, "2026-01-03", {}, REPO)


def test_thresholds_become_overrides_that_the_config_accepts():
    from cscnn.config import load_config

    params = {
        **NO_PARAMS,
        "auc_floor": 0.0,
        "max_auc_drop": 0.02,
        "overrides": ["train.epochs=1", " ", "gate.auc_floor=0.9"],
    }
    args = orchestration.daily_arguments(params, "2026-01-03", {}, REPO)
    # extra overrides first, then the threshold fields (they win); 0.0 is a value, not "empty"
    assert args["overrides"] == ["train.epochs=1", "gate.auc_floor=0.9", "gate.auc_floor=0.0", "gate.max_auc_drop=0.02"]
    cfg = load_config("tiny", overrides=args["overrides"])
    assert (cfg.gate.auc_floor, cfg.gate.max_auc_drop, cfg.train.epochs) == (0.0, 0.02, 1)
    assert cfg.gate.max_category_drop == load_config("tiny").gate.max_category_drop  # empty: the config's value


@pytest.mark.parametrize(
    ("params", "ds", "message"),
    [
        ({"overrides": ["epochs=3"]}, "2026-01-03", "section.key=value"),
        ({}, None, "no run date"),
        ({"day": "03/01/2026"}, None, "not a YYYY-MM-DD date"),
        ({"day": "2026-02-30"}, None, "not a YYYY-MM-DD date"),
    ],
)
def test_bad_params_are_refused_before_anything_runs(params, ds, message):
    with pytest.raises(ConfigError, match=message):
        orchestration.daily_arguments({**NO_PARAMS, **params}, ds, {}, REPO)


def record(**fields):
    return status.DayRecord.from_dict({"day": "2026-01-03", **fields})


def test_force_retrain_decides_whether_a_decided_day_runs_again():
    for decided_status in ("promoted", "not_promoted"):
        decided = record(status=decided_status, updated="2026-11-24T10:00:00+00:00")
        assert "already decided" in status.skip_reason(decided, force=False)
        assert status.skip_reason(decided, force=True) is None
    for other in (record(), record(status="rejected"), record(status="validated"), record(status="trained")):
        assert status.skip_reason(other, force=False) is None


def test_only_a_fresh_rejection_is_a_validation_failure():
    before = record(status="rejected", updated="2026-11-24T10:00:00+00:00")
    assert status.rejected_by_this_run(before, record(status="rejected", updated="2026-11-24T11:00:00+00:00"))
    assert not status.rejected_by_this_run(before, before)  # a stale mark: the run died before validating
    assert not status.rejected_by_this_run(record(), record(status="versioned", updated="2026-11-24T11:00:00+00:00"))


def test_report_shows_decision_aucs_versions_and_data_docs():
    day = {
        "day": "2026-01-04",
        "status": "not_promoted",
        "validation": {"success": True, "failures": [], "docs": "/s/runs/2026-01-04/validation/docs/index.html"},
        "data_version": "day-2026-01-04@abc123",
        "gate": {
            "passed": False,
            "candidate_auc": 0.7012,
            "champion_auc": 0.7301,
            "champion_version": "1",
            "reasons": ["auc_change: candidate 0.7012 vs champion 0.7301"],
        },
        "candidate_version": "2",
        "mlflow_run": "r2",
        "champion": "1",
    }
    text = status.format_record(status.DayRecord.from_dict(day))
    for expected in (
        "day 2026-01-04: not_promoted",
        "gate: FAILED; candidate AUC 0.7012, champion AUC 0.7301 (v1)",
        "reason: auc_change",
        "candidate: model version 2 (MLflow run r2)",
        "champion: v1",
        "data version: day-2026-01-04@abc123",
        "data docs: /s/runs/2026-01-04/validation/docs/index.html",
    ):
        assert expected in text
    assert status.summary(status.DayRecord.from_dict(day))["candidate_auc"] == 0.7012

    rejected = {
        "day": "2026-01-05",
        "status": "rejected",
        "validation": {
            "success": False,
            "failures": [{"table": "impressions", "expectation": "values_in_set", "column": "click", "details": "2"}],
            "docs": "/d/index.html",
        },
    }
    text = status.format_record(status.DayRecord.from_dict(rejected))
    assert "validation: FAILED" in text and "impressions: values_in_set [click]: 2" in text


def test_airflow_env_points_everything_inside_the_state(tmp_path):
    from cscnn.entrypoints import airflow_setup
    from cscnn.state import State

    env = airflow_setup.airflow_env(State.from_env(tmp_path), base={"PATH": "/usr/bin", "CSCNN_PROFILE": "tiny"})
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert env["CSCNN_STATE"] == str(tmp_path) and env["CSCNN_PROFILE"] == "tiny"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


# ---------------------------------------------------------------------------------------------------------------
# One real `airflow dags test`, with the Kubeflow pipeline replaced
# ---------------------------------------------------------------------------------------------------------------

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


@pytest.mark.slow
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
    assert [run[0][:10] for run in runs] == ["2026-01-04", "2026-01-05", "2026-01-06"]
    for _, start, end in runs:
        seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
        assert start >= started.strftime("%Y-%m-%d %H:%M") and 0 < seconds < 300, (start, end)
    assert "day 2026-01-04: promoted | " in outcomes["2026-01-04"] and "gate: PASSED" in outcomes["2026-01-04"]
    assert "rejected" in outcomes["2026-01-05"]  # the report task ran after the failed pipeline task
    assert "day 2026-01-06 has not landed" in outcomes["2026-01-06"]
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


def test_cscnn_airflow_env_prints_exports_and_run_day_refuses_bad_conf(tmp_path):
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    result = CliRunner().invoke(app, ["airflow", "env", "--state", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"export AIRFLOW_HOME={tmp_path / 'airflow'}" in result.output
    assert f"export CSCNN_STATE={tmp_path}" in result.output
    for conf, message in (("[1]", "must be a JSON object"), ("{nope", "not JSON")):
        result = CliRunner().invoke(app, ["airflow", "run-day", "2026-01-03", "--conf", conf, "--state", str(tmp_path)])
        assert result.exit_code == 2 and message in result.output, result.output
