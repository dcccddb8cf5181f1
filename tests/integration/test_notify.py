"""The DAGs' failure notifier (`cscnn.entrypoints.notify`): off by default beyond a log line; with
$CSCNN_ALERT_WEBHOOK it POSTs one JSON alert naming the kind of failure to a real HTTP server (a local one here),
and a webhook that is down never raises."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from cscnn.entrypoints import notify, orchestration


def context(exception: BaseException) -> dict:
    ti = SimpleNamespace(
        dag_id="cscnn_daily",
        run_id="manual__2026-01-05T00:00:00+00:00",
        task_id="report",
        try_number=1,
        log_url="http://airflow/log",
    )
    return {"ti": ti, "exception": exception, "params": {"day": None}, "ds": "2026-01-05"}


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_off_by_default_it_only_logs(caplog):
    alert = notify.notify_failure(context(RuntimeError("failed: day 2026-01-05 failed at step train")), env={})
    assert alert["delivered"] is None and alert["kind"] == "failed"
    assert "ALERT [cscnn_daily] failed: day 2026-01-05 failed at step train" in caplog.text


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (orchestration.NotLanded("day 2026-01-05 has not landed in /l"), "not landed"),
        (orchestration.DayRejected("day 2026-01-05 rejected by data validation"), "rejected"),
        (ValueError("override 'x' must look like section.key=value"), "bad configuration"),
        (RuntimeError("day 2026-01-05 failed at step train: boom"), "failed"),
    ],
)
def test_the_alert_names_the_kind_the_day_and_the_run(webhook, exc, kind):
    url, received = webhook
    message = orchestration.failure_message(exc)
    alert = notify.notify_failure(context(RuntimeError(message + "\nsecond line")), env={notify.WEBHOOK_ENV: url})
    assert alert["delivered"] is True
    (body,) = received
    assert body["kind"] == kind and body["day"] == "2026-01-05" and body["run_id"].startswith("manual__2026-01-05")
    assert body["message"] == message and "second line" not in body["text"]
    assert body["text"].startswith(f"[cscnn_daily] {kind}: ")


def test_a_webhook_that_is_down_is_logged_without_its_url(caplog):
    url = "http://127.0.0.1:9/hook?token=secret"  # port 9 (discard): nothing listens
    alert = notify.notify_failure(context(RuntimeError("failed: x")), env={notify.WEBHOOK_ENV: url})
    assert alert["delivered"] is False
    assert "was not reached" in caplog.text and "secret" not in caplog.text


def test_the_report_tells_a_skipped_rerun_a_rejected_day_and_a_missing_day_apart(tmp_path):
    """`orchestration.outcome`, the report task's body: three outcomes, three readings (no Airflow needed)."""
    from cscnn.daily import status
    from cscnn.state import State

    landing = tmp_path / "landing"
    (landing / "impressions").mkdir(parents=True)
    for day in ("2026-01-04", "2026-01-05"):
        (landing / "impressions" / f"{day}.parquet").write_bytes(b"")
    env = {"CSCNN_STATE": str(tmp_path / "state"), "CSCNN_LANDING": str(landing)}
    state = State.from_env(tmp_path / "state")
    status.mark(state, "2026-01-04", status=status.DayStatus.PROMOTED, champion="1")
    failure = {"table": "impressions", "expectation": "values_in_set", "column": "click", "details": "row 17"}
    status.mark(
        state,
        "2026-01-05",
        status=status.DayStatus.REJECTED,
        step="validate",
        validation={"success": False, "failures": [failure], "docs": "d.html"},
    )

    summary, failure_message = orchestration.outcome({}, "2026-01-04", env, tmp_path, "skipped")
    assert failure_message is None and summary["outcome"].startswith("not rerun (already decided")
    summary, failure_message = orchestration.outcome({}, "2026-01-05", env, tmp_path, "failed")
    assert failure_message.startswith("rejected: day 2026-01-05 at step validate")
    assert "impressions: values_in_set [click]: row 17" in failure_message
    assert notify.failure_kind(failure_message) == "rejected"
    summary, failure_message = orchestration.outcome({}, "2026-01-06", env, tmp_path, "upstream_failed")
    assert failure_message.startswith("not landed: day 2026-01-06 has not landed") and summary["status"] is None
    assert notify.failure_kind(failure_message) == "not landed"
