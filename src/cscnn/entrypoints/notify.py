"""The failure notifier of the DAGs: an `on_failure_callback` operators point at their alerting.

Off by default beyond one log line. With `$CSCNN_ALERT_WEBHOOK` set (read when a task fails, so a deployment
sets it in the workers' environment, no DAG change), it also POSTs one JSON object to that URL: `text` (one
line, the shape Slack's and Mattermost's incoming webhooks take) and the fields an alert router matches on
(`dag_id`, `run_id`, `task_id`, `day`, `try_number`, `kind`, `message`, `log_url`). The message is the failure's
first line: the kind (not landed, rejected, failed at a step) and the day, never request content or a secret.
The URL itself is never logged (it often carries a token). A webhook that fails or times out is logged and
ignored: an alert must not change the run's outcome.

Standard library only: the DAG files import it at parse time.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any

from cscnn import settings
from cscnn.daily.status import DayStatus

WEBHOOK_ENV = "CSCNN_ALERT_WEBHOOK"
TIMEOUT_S = 10.0
# The kinds a failure message of the daily DAG starts with (`orchestration.outcome`); anything else: "failed".
KINDS = ("not landed", DayStatus.REJECTED.value, "bad configuration", DayStatus.FAILED.value)
log = logging.getLogger("cscnn.alerts")


def failure_alert(context: Mapping[str, Any]) -> dict[str, Any]:
    """What the alert says, from an Airflow task's context (its `exception`, `ti`, `params`, `ds`)."""
    ti = context.get("ti")
    exception = context.get("exception")
    message = str(exception).strip().splitlines()[0] if exception and str(exception).strip() else repr(exception)
    params = context.get("params") or {}
    alert = {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "try_number": getattr(ti, "try_number", None),
        "day": params.get("day") or context.get("ds"),
        "kind": failure_kind(message),
        "message": message[:500],
        "log_url": getattr(ti, "log_url", None),
    }
    alert["text"] = f"[{alert['dag_id']}] {alert['message']} (day {alert['day']}, run {alert['run_id']})"
    return alert


def failure_kind(message: str) -> str:
    """The kind of failure a message names (the DAGs' failure messages start with it)."""
    return next((kind for kind in KINDS if message.startswith(kind)), DayStatus.FAILED.value)


def notify_failure(context: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `on_failure_callback`: log the alert, and POST it to `$CSCNN_ALERT_WEBHOOK` when that is set.
    Returns the alert with `delivered` (True, False, or None when no webhook is set)."""
    alert = failure_alert(context)
    log.error("ALERT %s", alert["text"])
    url = settings.read(WEBHOOK_ENV, env) or ""
    delivered = None
    if url:
        request = urllib.request.Request(
            url, data=json.dumps(alert).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                delivered = 200 <= response.status < 300
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts; a malformed URL
            log.warning("the alert webhook ($%s) was not reached: %s", WEBHOOK_ENV, type(exc).__name__)
            delivered = False
    return {**alert, "delivered": delivered}
