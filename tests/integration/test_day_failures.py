"""A failing day says what failed: the step, the error in one line, and whether Airflow may retry it.

Two real `kfp.local` runs that stop at validation (a file that is not Parquet, a look-ahead impression: a few
seconds each), and the KFP components' own bodies run in this process for the failures further down the
pipeline (`python_func`: what `kfp.local` runs in a subprocess).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from cscnn.daily import faults, status
from cscnn.daily.status import DayStatus
from cscnn.daily.steps import DataValidationError
from cscnn.data import schema
from cscnn.data.synth import generate_world
from cscnn.entrypoints import orchestration
from cscnn.errors import ConfigError, DataContractError
from cscnn.state import State

DAY = "2026-01-01"


@pytest.fixture(scope="module")
def landing_world(tiny_with, tmp_path_factory) -> Path:
    """A tiny landing folder of two days (module-wide, read-only: a test that damages it copies it)."""
    path = tmp_path_factory.mktemp("landing") / "world"
    generate_world(tiny_with("world.n_days=2").world, path)
    return path


@pytest.fixture
def local_run(monkeypatch, tmp_path):
    """Run the daily pipeline for a landing folder through `run_day`, with kfp.local, on a fresh state."""
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CSCNN_LOCK_WAIT", "0")
    state = State(tmp_path / "state")

    def run(landing: Path, day: str = DAY):
        arguments = {"day": day, "landing": str(landing), "state_dir": str(state.root), "profile": "tiny"}
        return orchestration.run_day("daily", {**arguments, "overrides": []})

    return state, run


def _copy(world: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(world, tmp_path / "landing"))


def test_a_file_that_is_not_parquet_rejects_the_day_at_validation_and_is_not_retried(
    landing_world, local_run, tmp_path
):
    state, run = local_run
    landing = _copy(landing_world, tmp_path)
    schema.impressions_path(landing, DAY).write_bytes(b"day,user\n1,2\n")  # a CSV export under a .parquet name

    with pytest.raises(orchestration.DayRejected) as caught:
        run(landing)
    assert isinstance(caught.value, orchestration.NotRetryable)  # the DAG maps it to AirflowFailException
    assert "rejected by data validation at step validate" in str(caught.value)
    assert "impressions: file_readable" in str(caught.value) and "cannot read as Parquet" in str(caught.value)

    record = status.read(state, DAY)
    assert record.status == DayStatus.REJECTED
    assert record.step == "validate" and record.retryable is False and record.running is None
    assert record.error.startswith("DataValidationError: ") and "cannot read as Parquet" in record.error
    assert "\n" not in record.error
    assert [f["expectation"] for f in record.failures] == ["file_readable"]
    text = status.format_record(record)
    assert "failed step: validate (not retried" in text and "error: DataValidationError" in text
    assert not state.registry_world.exists()


def test_a_look_ahead_impression_is_rejected_and_nothing_is_versioned(landing_world, local_run, tmp_path):
    state, run = local_run
    landing = _copy(landing_world, tmp_path)
    items = pd.read_parquet(landing / schema.ITEMS_FILE)
    good = pd.read_parquet(schema.impressions_path(landing, DAY))
    late = items.loc[items[schema.AVAILABLE_FROM] > DAY, "item_id"].iloc[0]  # enters the catalogue later
    good.assign(item_id=good["item_id"].where(good.index != 0, late)).to_parquet(
        schema.impressions_path(landing, DAY), index=False
    )

    with pytest.raises(orchestration.DayRejected, match="item_available_from_later") as caught:
        run(landing)
    assert late in str(caught.value)
    record = status.read(state, DAY)
    assert record.status == DayStatus.REJECTED and record.step == "validate"
    assert {f["column"] for f in record.failures} == {"item_available_from_later"}
    assert record.data_version is None
    assert not (state.data_registry / ".git").exists() and not state.registry_world.exists()  # never versioned

    good.to_parquet(schema.impressions_path(landing, DAY), index=False)  # upstream fixed the export: rerun
    run(landing)
    record = status.read(state, DAY)
    assert record.status == DayStatus.WAITING_FOR_HISTORY and record.data_version
    assert (record.step, record.running, record.error, record.retryable) == ("version", None, None, None)
    assert schema.impressions_path(state.registry_world, DAY).is_file()


def _artifact(tmp_path: Path, name: str) -> SimpleNamespace:
    return SimpleNamespace(path=str(tmp_path / name), metadata={})


@pytest.mark.parametrize(
    ("error", "recorded", "retryable", "raised"),
    [
        (RuntimeError("CUDA error: out of memory\nkernel errors may be reported late"), "failed", True, RuntimeError),
        (DataContractError("items.parquet: row 3: price -1"), "rejected", False, orchestration.DayRejected),
        (ConfigError("train.workers=3 but only 2 GPUs"), "failed", False, orchestration.NotRetryable),
    ],
)  # fmt: skip
def test_a_step_that_raises_mid_pipeline_records_its_name_and_the_error(
    error, recorded, retryable, raised, monkeypatch, tmp_path
):
    from cscnn.daily import steps
    from kfp_pipelines import components

    state = State(tmp_path / "state")
    status.mark(state, DAY, status=DayStatus.VERSIONED, data_version=f"{DAY}@abc")
    before = status.read(state, DAY)

    def train_candidate(*args, **kwargs):
        assert status.read(state, DAY).running["pid"] == os.getpid()  # recorded as running while it runs
        raise error

    monkeypatch.setattr(steps, "train_candidate", train_candidate)
    with pytest.raises(type(error)):
        components.train_candidate.python_func(
            day=DAY, profile="tiny", overrides=[], state_dir=str(state.root), gpus=0, candidate=_artifact(tmp_path, "c")
        )
    record = status.read(state, DAY)
    assert (record.status, record.step, record.retryable, record.running) == (
        recorded,
        "train-candidate",
        retryable,
        None,
    )
    assert record.error == f"{type(error).__name__}: {str(error).splitlines()[0]}"
    assert record.data_version == f"{DAY}@abc"  # what earlier steps recorded stays

    failure = orchestration.run_failure(state, DAY, before, RuntimeError("Task 'train-candidate' failed"))
    assert type(failure) is raised
    assert "train-candidate" in str(failure) and str(error).splitlines()[0] in str(failure)
    assert "fail" in status.format_record(record) and f"error: {record.error}" in status.format_record(record)


def test_config_loading_inside_a_component_is_recorded_too(tmp_path):
    from kfp_pipelines import components

    state = State(tmp_path / "state")
    with pytest.raises(ConfigError):
        components.gate.python_func(
            evaluation={}, day=DAY, profile="no-such-profile", overrides=[], state_dir=str(state.root),
            decision=_artifact(tmp_path, "d"), summary=_artifact(tmp_path, "s"),
        )  # fmt: skip
    record = status.read(state, DAY)
    assert (record.status, record.step, record.retryable) == (DayStatus.FAILED, "gate", False)


def test_a_step_killed_without_recording_reads_as_interrupted_and_the_run_records_it(tmp_path):
    state = State(tmp_path / "state")
    status.mark(state, DAY, status=DayStatus.VERSIONED)
    before = status.read(state, DAY)
    code = (
        "import os, signal, sys\n"
        "from cscnn.daily.faults import failing_step\nfrom cscnn.state import State\n"
        "with failing_step(State.from_env(sys.argv[1]), sys.argv[2], 'train-candidate'):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(state.root), DAY], check=False)
    assert killed.returncode == -signal.SIGKILL

    left = status.read(state, DAY)
    assert left.status == DayStatus.VERSIONED and left.running["step"] == "train-candidate" and left.error is None
    reported = faults.as_reported(left)
    assert reported.status == DayStatus.FAILED and reported.step == "train-candidate"
    assert reported.error.startswith("interrupted: step train-candidate was running (pid ")
    assert "day 2026-01-01: failed" in status.format_record(
        reported
    ) and "failed step: train-candidate" in status.format_record(reported)
    assert faults.as_reported(status.read(state, DAY)) == reported  # reading does not write
    assert faults.reported(state, DAY) == reported  # what every reader gets (tests/unit/test_day_status.py)

    failure = orchestration.run_failure(state, DAY, before, RuntimeError("Task 'train-candidate' finished: FAILURE"))
    assert isinstance(failure, RuntimeError) and "train-candidate" in str(failure)
    record = status.read(state, DAY)
    assert (record.status, record.step, record.running, record.retryable) == (
        DayStatus.FAILED,
        "train-candidate",
        None,
        True,
    )
    assert "ended without recording an outcome" in record.error


def test_a_failed_forced_rerun_keeps_the_decision_and_records_the_error(tmp_path):
    from kfp_pipelines import components

    state = State(tmp_path / "state")
    status.mark(state, DAY, status=DayStatus.PROMOTED, champion="1")
    with pytest.raises(ConfigError):
        components.keep_champion.python_func(
            decision=_artifact(tmp_path, "d"), day=DAY, profile="no-such-profile", overrides=[],
            state_dir=str(state.root),
        )  # fmt: skip
    record = status.read(state, DAY)
    assert record.status == DayStatus.PROMOTED and record.decided  # the skip rule still holds
    assert record.step == "keep-champion" and record.error.startswith("ConfigError: ")
    assert status.skip_reason(record, force=False)


def test_cscnn_daily_status_prints_the_failed_step_and_the_error(tmp_path):
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    state = State(tmp_path / "state")
    with pytest.raises(RuntimeError), faults.failing_step(state, DAY, "package"):
        raise RuntimeError("service did not become ready within 60 s\nlast log lines: ...")
    result = CliRunner().invoke(app, ["daily", "status", "--day", DAY, "--state", str(state.root)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["status"] == "failed" and shown["step"] == "package"
    assert shown["error"] == "RuntimeError: service did not become ready within 60 s"
    assert (
        "day 2026-01-01: failed; step package failed: RuntimeError: service did not become ready within 60 s"
        " (a retry may help)"
    ) in result.stderr


def test_a_step_that_succeeds_leaves_no_running_process_and_clears_an_earlier_error(tmp_path):
    state = State(tmp_path / "state")
    with pytest.raises(RuntimeError), faults.failing_step(state, DAY, "version"):
        raise RuntimeError("dvc push: remote unreachable")
    with faults.failing_step(state, DAY, "version"):  # the retry
        status.mark(state, DAY, status=DayStatus.WAITING_FOR_HISTORY)
    record = status.read(state, DAY)
    assert (record.status, record.step, record.running, record.error) == (
        "waiting_for_history",
        "version",
        None,
        None,
    )
    assert faults.as_reported(record) == record and faults.failure_line(record) is None
    assert "failed step" not in status.format_record(record)


def test_a_rejection_recorded_without_an_error_line_is_still_a_rejection(tmp_path):
    """A runner that marks the rejection itself (the DAG test's fake pipeline, an older step) is not retried."""
    state = State(tmp_path / "state")
    before = status.read(state, DAY)
    failure = {"table": "impressions", "expectation": "values_in_set", "column": "click", "details": "row 17"}
    status.mark(
        state, DAY, status=DayStatus.REJECTED, validation={"success": False, "failures": [failure], "docs": "d"}
    )
    raised = orchestration.run_failure(state, DAY, before, RuntimeError("validate failed"))
    assert isinstance(raised, orchestration.DayRejected) and "rejected by data validation" in str(raised)
    assert "impressions: values_in_set [click]: row 17" in str(raised)


def test_the_status_line_of_a_rejected_day_names_its_failed_checks_and_columns(tmp_path):
    state = State(tmp_path / "state")
    failures = [
        {"table": "impressions", "expectation": "expect_column_values_to_be_in_set", "column": "click"},
        {"table": "impressions", "expectation": "expect_compound_columns_to_be_unique"},
        {"table": "items", "expectation": "expect_column_values_to_not_be_null", "column": "image"},
        {"table": "users", "expectation": "expect_column_values_to_be_unique", "column": "user_id"},
    ]
    with pytest.raises(DataValidationError), faults.failing_step(state, DAY, "validate"):
        status.mark(state, DAY, status=DayStatus.REJECTED, validation={"success": False, "failures": failures})
        raise DataValidationError(f"day {DAY} failed validation; nothing was trained")
    line = faults.failure_line(status.read(state, DAY))
    assert "\n" not in line and line.endswith("(not retryable: fix the data or the configuration)")
    assert (
        "failed checks: impressions.expect_column_values_to_be_in_set [click], "
        "impressions.expect_compound_columns_to_be_unique, items.expect_column_values_to_not_be_null [image]"
        " and 1 more"
    ) in line
    assert status.read(state, DAY).status == DayStatus.REJECTED
