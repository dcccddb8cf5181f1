"""`airflow dags test`, with the run named after the day it processes (the local runner's path to Airflow).

    python -m cscnn.entrypoints.dag_test DAG_ID YYYY-MM-DD [CONF_JSON]

`airflow dags test DAG DAY` names its run `manual__<wall-clock time>` and sets "Run After" to the time it was
started, and the UI's runs list shows only those two: an operator could not tell which day a demo run
processed. This runs the same `DAG.test` (Airflow 3.3, no scheduler, tasks in this process) with the run's
"Run After" at the day itself, so the run id reads `manual__<day>T00:00:00+00:00`, then gives the run its real
start time (`DAG.test` records the run as started at its logical date: a January day's run showed as lasting
months), and writes the day's outcome (the `outcome` XCom of its `report` task: kind first, e.g. "day D: rejected |
validation: FAILED ...", "day D: promoted | ...", "failed: ...") as the run's note, which the UI shows on the
run and in the runs list: a rejected day reads differently from a broken run without opening a task. Exit code
0 when the run succeeded, 1 when it failed. Every line of the run's output goes to stdout;
`airflow_setup.run_dag` cuts it into the per-task log files the UI reads (`task_log_files`).
"""

from __future__ import annotations

import datetime as dt
import json
import sys


def main(argv: list[str]) -> int:
    from airflow.models.dagrun import DagRun
    from airflow.providers_manager import ProvidersManager
    from airflow.utils.cli import get_bagged_dag
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    dag_id, day = argv[0], argv[1]
    conf = json.loads(argv[2]) if len(argv) > 2 else None
    logical = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    started = dt.datetime.now(dt.UTC)
    ProvidersManager().initialize_providers_configuration()  # what the `airflow` CLI does before `dags test`
    dag = get_bagged_dag(bundle_names=None, dag_id=dag_id)
    run = dag.test(logical_date=logical, run_after=logical, run_conf=conf)
    with create_session() as session:
        session.query(DagRun).filter(DagRun.id == run.id).update({DagRun.start_date: started})
        note = outcome_note(session, dag_id, run.run_id)
        if note:
            session.get(DagRun, run.id).note = note
    print(f"[cscnn] run {run.run_id} of {dag_id} for day {day}: {run.state}", flush=True)
    return 1 if run.state == DagRunState.FAILED else 0


NOTE_CHARS = 1000  # what Airflow's run note holds


def outcome_note(session, dag_id: str, run_id: str) -> str | None:
    """The run's `outcome` XCom (the cscnn_daily `report` task's one line), cut to a note's length; None for a
    DAG whose tasks push none (the embedding refresh)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "outcome"
    )
    value = session.scalars(query).first()
    if isinstance(value, str) and value.startswith('"'):
        value = json.loads(value)  # stored serialised
    if not isinstance(value, str) or not value:
        return None
    head, *rest = [part.strip() for part in value.split(" | ")]  # the note is Markdown: one line per part
    note = "\n".join([f"**{head}**", "", *(f"- {part}" for part in rest)])
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 3] + "..."


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
