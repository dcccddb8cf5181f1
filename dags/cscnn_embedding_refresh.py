"""The `cscnn_embedding_refresh` Airflow DAG: embed newly arrived ads with the champion's CNN between
retrains, through the Kubeflow pipeline `embedding_refresh`. Wiring and params only, as `cscnn_daily.py`."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from cscnn import settings
from cscnn.entrypoints import orchestration
from cscnn.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]  # relative landing/state paths are taken from the checkout
START_DATE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
PIPELINE_RETRIES = settings.read("CSCNN_PIPELINE_RETRIES")  # see cscnn_daily.py

DOC = """
# cscnn_embedding_refresh: embed new ads between retrains

Runs the Kubeflow pipeline `embedding_refresh`: validate and version the day, then compute visual vectors
for the ads the champion's embedding table lacks, with the champion's CNN (a GPU node on a cluster), and
attach the extended table to the champion. No training, no gate; `champion` does not move.

* **Schedule**: every 6 hours (00:00, 06:00, 12:00, 18:00 UTC), no catchup. New ads can be served before
  the next retrain; when nothing is new, the run is a cheap no-op.
* **Day**: the `day` param, else the latest day in the landing folder. A day `cscnn_daily` already decided is
  skipped: the daily run refreshed its embeddings (and a new champion gets a full table).
* Shares the `cscnn_state` pool (one slot) with `cscnn_daily`: the two never write the state at once.
"""


@dag(
    dag_id="cscnn_embedding_refresh",
    dag_display_name="CSCNN embedding refresh: new ads, champion CNN",
    description="Embed newly arrived ads with the champion's CNN between retrains.",
    doc_md=DOC,
    schedule=CronTriggerTimetable("0 */6 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["cscnn", "daily-loop"],
    default_args={"owner": "cscnn"},
    params={
        "day": Param(**orchestration.PARAMS["refresh_day"]),
        "landing": Param(**orchestration.PARAMS["landing"]),
        "profile": Param(**orchestration.PARAMS["profile"]),
    },
)
def cscnn_embedding_refresh():
    @task(
        retries=PIPELINE_RETRIES,
        retry_delay=dt.timedelta(minutes=5),
        execution_timeout=dt.timedelta(hours=2),
        pool=orchestration.STATE_POOL,
    )
    def trigger_pipeline(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the Kubeflow pipeline `embedding_refresh` for the day and wait."""
        try:
            arguments = orchestration.refresh_arguments(params or {}, os.environ, REPO_ROOT)
            return orchestration.run_day("embedding_refresh", arguments, False, "cscnn_daily refreshed its embeddings")
        except (ConfigError, orchestration.NotRetryable) as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def report(trigger: dict[str, Any]) -> dict[str, Any]:
        """Print how many new ads were embedded, by which champion version, and the day's status."""
        return orchestration.print_record(trigger)

    report(trigger_pipeline())


cscnn_embedding_refresh()
