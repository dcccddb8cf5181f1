"""Day status records in the MLflow tracking store (`CSCNN_STATUS_STORE=mlflow`, what a cluster sets): the same
`cscnn.daily.status` API, nothing written to the state folder, large records split over tags, one run per day
even when two processes create it."""

from __future__ import annotations

import pytest

from cscnn.daily import status
from cscnn.daily.status import DayStatus
from cscnn.errors import ConfigError
from cscnn.state import State
from cscnn.tools import record_store


@pytest.fixture
def mlflow_state(tmp_path, monkeypatch) -> State:
    """A tracking store outside the state folder (as a server would be), the status kept in it."""
    monkeypatch.setenv("CSCNN_STATUS_STORE", "mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}")
    (tmp_path / "server").mkdir()
    return State.from_env(tmp_path / "worker-state")


def test_records_live_in_the_tracking_store_not_in_the_state_folder(mlflow_state) -> None:
    assert status.read(mlflow_state, "2026-01-03").status is None
    status.mark(
        mlflow_state,
        "2026-01-03",
        status=DayStatus.VALIDATED,
        validation={"success": True, "failures": [], "docs": "x"},
    )
    status.mark(mlflow_state, "2026-01-03", status=DayStatus.PROMOTED, champion="2")
    status.mark(mlflow_state, "2026-01-04", status=DayStatus.REJECTED)
    record = status.read(mlflow_state, "2026-01-03")
    assert record.status == DayStatus.PROMOTED and record.champion == "2" and record.validation["success"] is True
    assert status.read(mlflow_state, "2026-01-04").status == DayStatus.REJECTED
    client = record_store._client(mlflow_state)
    runs = client.search_runs([record_store._experiment_id(client, mlflow_state)])
    assert sorted(r.data.tags[record_store.DAY_TAG] for r in runs) == ["2026-01-03", "2026-01-04"]  # one run a day
    assert not mlflow_state.day_status_file("2026-01-03").exists()
    # a decided day keeps its decision while a rerun is in progress (the same rule as the file store)
    status.mark(mlflow_state, "2026-01-03", status=DayStatus.STARTED)
    assert status.read(mlflow_state, "2026-01-03").status == DayStatus.PROMOTED


def test_a_large_record_is_split_over_tags_and_read_back_whole(mlflow_state) -> None:
    failures = [
        {"table": "impressions", "expectation": f"e{i}", "column": "c", "details": "x" * 300} for i in range(80)
    ]
    status.mark(
        mlflow_state,
        "2026-01-05",
        status=DayStatus.REJECTED,
        validation={"success": False, "failures": failures, "docs": "d"},
    )
    assert status.read(mlflow_state, "2026-01-05").failures == failures


def test_two_creators_of_a_days_run_end_on_the_same_run(mlflow_state) -> None:
    client = record_store._client(mlflow_state)
    experiment = record_store._experiment_id(client, mlflow_state)
    early = client.create_run(experiment, tags={record_store.DAY_TAG: "2026-01-06"})  # another process, first
    status.mark(mlflow_state, "2026-01-06", status=DayStatus.VERSIONED)
    runs = record_store._runs(client, experiment, "2026-01-06")
    assert [r.info.run_id for r in runs] == [early.info.run_id]  # the later one was deleted
    assert status.read(mlflow_state, "2026-01-06").status == DayStatus.VERSIONED


def test_an_unknown_store_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CSCNN_STATUS_STORE", "s3")
    with pytest.raises(ConfigError, match="'file' or 'mlflow'"):
        status.read(State.from_env(tmp_path), "2026-01-01")
