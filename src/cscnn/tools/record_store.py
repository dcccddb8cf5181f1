"""Day status records in the MLflow tracking server: where a cluster keeps them (`CSCNN_STATUS_STORE=mlflow`).

On one machine each day's record is a JSON file in the state folder (`cscnn.daily.status`). On a cluster the
pipeline's steps, the Airflow workers that read the decision and the operators' CLI run on different
machines with no folder in common, so the record lives in the service they all reach already: the MLflow
tracking server. One run per day in the experiment `cscnn-days`, tagged `cscnn.day=<day>`; the record is
its JSON in tags (`cscnn.record.0..n-1`, split below MLflow's tag length limit, written in one `log_batch`,
which the tracking store applies in one transaction), plus `cscnn.status` for the UI's filters.

Two processes that create the same day's run at the same moment both find the earliest one afterwards and
use it; the later run is deleted. Writes are read-modify-write, as with the file (`status.mark`): the loop
runs one step of a day at a time.
"""

from __future__ import annotations

import json
from typing import Any

from cscnn.state import State

EXPERIMENT = "cscnn-days"
DAY_TAG = "cscnn.day"
STATUS_TAG = "cscnn.status"
PART_TAG = "cscnn.record."
PARTS_TAG = "cscnn.record.parts"
PART_LENGTH = 7000  # MLflow's limit for a tag value is 8000 characters


def _client(state: State):
    from cscnn.tools import model_registry

    return model_registry.client(state)  # the tracking store of the state (a server on a cluster)


def _experiment_id(client, state: State) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = state.artifact_root.as_uri() if state.tracking_uri.startswith("sqlite") else None
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except Exception:  # created by another process in between
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is None:
            raise
        return found.experiment_id


def _runs(client, experiment_id: str, day: str) -> list:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`{DAY_TAG}` = '{day}'", order_by=["attributes.start_time ASC"]
    )


def _run_of(client, state: State, day: str, create: bool):
    experiment_id = _experiment_id(client, state)
    runs = _runs(client, experiment_id, day)
    if runs or not create:
        return runs[0] if runs else None
    mine = client.create_run(experiment_id, tags={DAY_TAG: day}, run_name=day)
    client.set_terminated(mine.info.run_id, "FINISHED")
    first = _runs(client, experiment_id, day)[0]
    if first.info.run_id != mine.info.run_id:  # another process created the day's run first: use that one
        client.delete_run(mine.info.run_id)
    return first


def load(state: State, day: str) -> dict[str, Any] | None:
    """The day's record as a dict, or None when the day has none."""
    client = _client(state)
    run = _run_of(client, state, day, create=False)
    if run is None:
        return None
    tags = run.data.tags
    parts = int(tags.get(PARTS_TAG, "0"))
    if not parts:
        return None
    return json.loads("".join(tags[f"{PART_TAG}{i}"] for i in range(parts)))


def save(state: State, day: str, record: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client = _client(state)
    run = _run_of(client, state, day, create=True)
    text = json.dumps(record, sort_keys=True)
    parts = [text[i : i + PART_LENGTH] for i in range(0, len(text), PART_LENGTH)] or [""]
    tags = [RunTag(f"{PART_TAG}{i}", part) for i, part in enumerate(parts)]
    tags += [RunTag(PARTS_TAG, str(len(parts))), RunTag(STATUS_TAG, str(record.get("status") or ""))]
    client.log_batch(run.info.run_id, tags=tags)
