"""The day status (`cscnn.daily.status`): the record operators, the Airflow report task and the demo read."""

import ast
from pathlib import Path

import pytest

from cscnn.daily.status import DayRecord, DayStatus, mark, read
from cscnn.state import State


def test_a_decided_day_keeps_its_decision_while_a_later_run_is_in_progress(tmp_path):
    state = State(tmp_path)
    mark(state, "2026-01-03", status=DayStatus.STARTED)
    assert read(state, "2026-01-03").status == DayStatus.STARTED
    mark(state, "2026-01-03", status=DayStatus.PROMOTED, champion="1")
    mark(state, "2026-01-03", status="validated", data_version="2026-01-03@abc")  # e.g. the embedding refresh
    record = read(state, "2026-01-03")
    assert record.status == DayStatus.PROMOTED and record.data_version == "2026-01-03@abc"
    mark(state, "2026-01-03", status=DayStatus.NOT_PROMOTED)  # a forced rerun's own decision replaces it
    assert read(state, "2026-01-03").status == DayStatus.NOT_PROMOTED
    mark(state, "2026-01-03", status=DayStatus.REJECTED)
    assert read(state, "2026-01-03").status == DayStatus.REJECTED


def test_a_day_with_no_record_reads_empty_and_a_misspelt_field_is_refused(tmp_path):
    state = State(tmp_path)
    assert read(state, "2026-01-04") == DayRecord(day="2026-01-04")
    with pytest.raises(TypeError):
        mark(state, "2026-01-04", candiate_version="1")
    with pytest.raises(ValueError):
        mark(state, "2026-01-04", status="promotd")
    assert not state.day_status_file("2026-01-04").exists()


def test_the_file_is_plain_json_and_unknown_keys_from_a_newer_writer_are_ignored(tmp_path):
    state = State(tmp_path)
    mark(state, "2026-01-05", status=DayStatus.WAITING_FOR_HISTORY, history_days=2)
    path = state.day_status_file("2026-01-05")
    text = path.read_text()
    assert '"status": "waiting_for_history"' in text and '"history_days": 2' in text
    path.write_text(text.replace('"history_days": 2', '"history_days": 2, "from_the_future": 1'))
    assert read(state, "2026-01-05").history_days == 2


def test_the_pipeline_refuses_a_decided_day_unless_forced_and_records_nothing(tmp_path):
    """A run submitted straight to a KFP backend skips Airflow's skip rule: its first step applies it."""
    from cscnn.daily.tasks import DayAlreadyDecided, refuse_decided

    state = State(tmp_path)
    refuse_decided("2026-01-03", str(tmp_path), force_retrain=False)  # no record yet: runs
    mark(state, "2026-01-03", status=DayStatus.PROMOTED, champion="1")
    before = state.day_status_file("2026-01-03").read_text()
    with pytest.raises(DayAlreadyDecided, match=r"already decided \(promoted .*force_retrain=true"):
        refuse_decided("2026-01-03", str(tmp_path), force_retrain=False)
    refuse_decided("2026-01-03", str(tmp_path), force_retrain=True)
    assert state.day_status_file("2026-01-03").read_text() == before


# The writers of a day's record read it raw; everything else reads it through `faults.reported`, so that a
# step whose process was killed reads as interrupted wherever the record is shown or decided on.
RAW_READERS = {"src/cscnn/daily/status.py", "src/cscnn/daily/faults.py", "src/cscnn/daily/steps.py"}


def _raw_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "cscnn.daily.status"
        for alias in node.names
        if alias.name == "read"
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        status_read = (
            isinstance(func, ast.Attribute) and func.attr == "read" and getattr(func.value, "id", "") == "status"
        )
        if status_read or (isinstance(func, ast.Name) and func.id in names):
            lines.append(node.lineno)
    return lines


def test_every_reader_but_the_writers_reads_the_record_as_reported(tmp_path):
    root = Path(__file__).resolve().parents[2]
    files = [p for folder in ("src", "dags", "bento", "kfp_pipelines") for p in (root / folder).rglob("*.py")]
    raw = {
        f"{path.relative_to(root)}:{line}"
        for path in files
        if path.relative_to(root).as_posix() not in RAW_READERS
        for line in _raw_reads(path)
    }
    assert raw == set(), "read the day's record with cscnn.daily.faults.reported (a killed step reads as interrupted)"
    probe = tmp_path / "probe.py"  # the check sees both spellings of a raw read
    probe.write_text("from cscnn.daily.status import read as r\nr(s, d)\nstatus.read(s, d)\nfaults.reported(s, d)\n")
    assert _raw_reads(probe) == [2, 3]
