"""The Airflow DAGs (dags/cscnn_daily.py): they parse cleanly and cheaply (no DB, no heavy imports), have the
intended structure, and map params to pipeline arguments correctly; the DAG's setup (database, pool) is real.
The one real `airflow dags test` run is in tests/system/test_airflow_run.py.

Airflow reads AIRFLOW_HOME when it is first imported, so every test here points it at a temporary folder
before importing anything from Airflow; nothing is written to ~/airflow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cscnn.daily import status
from cscnn.entrypoints import orchestration
from cscnn.errors import ConfigError

# Not `importorskip`: importing Airflow here, before AIRFLOW_HOME is set, would create ~/airflow.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="apache-airflow not installed")

REPO = Path(__file__).resolve().parents[2]
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


def test_training_params_become_overrides_and_the_gpu_request(tiny_with):

    params = {**NO_PARAMS, "train_workers": 2, "train_nodes": 3, "train_gpus": 4}
    args = orchestration.daily_arguments(params, "2026-01-03", {}, REPO)
    assert args["overrides"] == ["train.workers=2", "train.nodes=3", "train.gpus=4"]
    assert args["train_gpus"] == 4  # the pipeline's train step requests them
    cfg = tiny_with(*args["overrides"])
    assert (cfg.train.workers, cfg.train.nodes, cfg.train.gpus) == (2, 3, 4)
    assert "train_gpus" not in orchestration.daily_arguments(NO_PARAMS, "2026-01-03", {}, REPO)


def test_thresholds_become_overrides_that_the_config_accepts(tiny_with):

    params = {
        **NO_PARAMS,
        "auc_floor": 0.0,
        "max_auc_drop": 0.02,
        "overrides": ["train.epochs=1", " ", "gate.auc_floor=0.9"],
    }
    args = orchestration.daily_arguments(params, "2026-01-03", {}, REPO)
    # extra overrides first, then the threshold fields (they win); 0.0 is a value, not "empty"
    assert args["overrides"] == ["train.epochs=1", "gate.auc_floor=0.9", "gate.auc_floor=0.0", "gate.max_auc_drop=0.02"]
    cfg = tiny_with(*args["overrides"])
    assert (cfg.gate.auc_floor, cfg.gate.max_auc_drop, cfg.train.epochs) == (0.0, 0.02, 1)
    assert cfg.gate.max_category_drop == tiny_with().gate.max_category_drop  # empty: the config's value


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
