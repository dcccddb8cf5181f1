"""The day status file that operators and the Airflow report task read."""


def test_a_decided_day_keeps_its_decision_while_a_later_run_is_in_progress(tmp_path):
    from cscnn.daily.steps import mark, read_status
    from cscnn.state import State

    state = State(tmp_path)
    mark(state, "2026-01-03", status="started")
    assert read_status(state, "2026-01-03")["status"] == "started"
    mark(state, "2026-01-03", status="promoted", champion="1")
    mark(state, "2026-01-03", status="validated", data_version="2026-01-03@abc")  # e.g. the embedding refresh
    status = read_status(state, "2026-01-03")
    assert status["status"] == "promoted" and status["data_version"] == "2026-01-03@abc"
    mark(state, "2026-01-03", status="not_promoted")  # a forced rerun's own decision replaces it
    assert read_status(state, "2026-01-03")["status"] == "not_promoted"
    mark(state, "2026-01-03", status="rejected")
    assert read_status(state, "2026-01-03")["status"] == "rejected"
