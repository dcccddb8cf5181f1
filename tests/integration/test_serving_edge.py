"""The ranking service's exposed surface, against one real `bentoml serve` of bento/service.py (tiny model):
admin authentication, malformed requests, bounded metrics, private logs, connection limits, and a schemathesis
run of the service's own OpenAPI document (0 server errors, 0 response-conformance failures).

One server for the module (about 5 s to start); the fast tests at the end need none.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cscnn.data.io import open_world
from cscnn.serving.schemas import request_model
from cscnn.serving.security import QuietClientErrors, RequestGuard, admin_token
from cscnn.serving.sources import RegistrySource, UnsafeTagError, cache_key
from cscnn.training.embed import export_table
from cscnn.training.train import train

ROOT = Path(__file__).parents[2]
TOKEN = "edge-test-token-0123456789abcdef"
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 4
MIN_BODY_RATE = 100  # bytes/s: low, so that a test's slow bodies stay under way for seconds
MAX_CANDIDATES = 20
SECRET_USER = "user-4711-do-not-log"
SECRET_DEVICE = "device-do-not-log"
JSON = {"content-type": "application/json"}
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    port: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dirs(tiny_with, tiny_world, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("edge-model")
    train(open_world(tiny_world), tiny_with("train.epochs=1"), out=root / "m", progress=False)
    export_table(root / "m", tiny_world, root / "t")
    return root / "m", root / "t"


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory):
    """`bentoml serve service:RankingService` from bento/ on a free local port, with an admin token."""
    root = tmp_path_factory.mktemp("edge-server")
    port, log = _free_port(), root / "server.log"
    env = {
        **os.environ,
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "CSCNN_PROFILE": "tiny",
        "CSCNN_MODEL_DIR": str(model_dirs[0]),
        "CSCNN_TABLE_DIR": str(model_dirs[1]),
        "CSCNN_SET": f"serve.max_candidates={MAX_CANDIDATES} serve.poll_seconds=0 "
        f"serve.header_timeout_s={HEADER_TIMEOUT_S} serve.body_timeout_s={BODY_TIMEOUT_S} "
        f"serve.min_body_bytes_per_s={MIN_BODY_RATE}",
        "CSCNN_ADMIN_TOKEN": TOKEN,
    }
    command = [sys.executable, "-m", "bentoml", "serve", "service:RankingService", "--working-dir", "bento"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        from cscnn.tools.packaging import PackagingError, wait_ready

        try:
            wait_ready(url, 90, proc)
        except PackagingError as exc:
            pytest.fail(f"{exc}:\n{log.read_text()[-3000:]}")
        yield Server(url, log, port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rank_body(**context) -> dict:
    return {"user": {"id": SECRET_USER}, "context": {"device": SECRET_DEVICE, **context}, "candidates": ["i000001"]}


# --- admin ------------------------------------------------------------------------------------------------------


def test_admin_reload_needs_the_bearer_token(server) -> None:
    no_token = httpx.post(f"{server.url}/admin/reload", json={})
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(f"{server.url}/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401 and "error" in wrong.json()
    right = httpx.post(f"{server.url}/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and right.json()["model"]["name"] == "local"
    # a browser's cross-origin "simple" POST: text/plain, no preflight; refused before any handler runs
    simple = httpx.post(f"{server.url}/admin/reload", content=b"{}", headers={"content-type": "text/plain"})
    assert simple.status_code == 401 and "access-control-allow-origin" not in simple.headers


def test_admin_endpoints_are_disabled_without_a_token() -> None:
    assert admin_token({}) is None and admin_token({"CSCNN_ADMIN_TOKEN": "short"}) is None
    assert admin_token({"CSCNN_ADMIN_TOKEN": TOKEN}) == TOKEN
    from starlette.testclient import TestClient

    reached = []

    async def app(scope, receive, send) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = RequestGuard(app, api_routes=["/rank"], admin_routes=["/admin/reload"], openapi=dict, token=None)
    client = TestClient(guard)  # no lifespan: the guard alone
    answer = client.post("/admin/reload", json={}, headers={"Authorization": "Bearer anything-at-all-here"})
    assert answer.status_code == 403 and "CSCNN_ADMIN_TOKEN" in answer.json()["error"]
    assert client.post("/rank", json={}).status_code == 200
    assert reached == ["/rank"]


# --- malformed requests -------------------------------------------------------------------------------------------


def test_every_malformed_request_gets_a_4xx(server) -> None:
    body = json.dumps(rank_body(hour=3)).encode()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    cases = {
        "multipart without boundary, /rank": ("/rank", body, {"content-type": "multipart/form-data"}, 415),
        "multipart without boundary, /admin/reload": (
            "/admin/reload",
            body,
            {**admin, "content-type": "multipart/form-data"},
            415,
        ),
        "text/plain": ("/rank", body, {"content-type": "text/plain"}, 415),
        "no content type": ("/rank", body, {"content-type": ""}, 415),
        "50 MB body": ("/rank", b'{"candidates": ["' + b"x" * 50_000_000 + b'"]}', JSON, 413),
        "1 MB id": ("/rank", json.dumps({**rank_body(), "candidates": ["y" * 1_000_000]}).encode(), JSON, 413),
    }
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for case, (path, content, headers, status) in cases.items():
            answer = client.post(path, content=content, headers=headers)
            assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:200]}"
            assert "error" in answer.json(), case
        assert client.post("/rank", json=rank_body(hour=3)).status_code == 200  # still serving


# --- metrics and logs ---------------------------------------------------------------------------------------------


def _series(server: Server) -> list[str]:
    text = httpx.get(f"{server.url}/metrics").text
    return sorted(line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#"))


def test_metrics_do_not_grow_with_the_urls_clients_send(server) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/no-such-page").status_code == 404  # the one label every unknown path shares
        before = _series(server)
        for n in range(300):
            client.get(f"/junk/{n}/{'x' * (n % 50)}?q={n}")
            client.post(f"/rank/{n}", json={})
    after = _series(server)
    assert after == before, sorted(set(after) ^ set(before))[:10]
    assert not [s for s in after if "junk" in s or "/rank/" in s]


def test_a_bad_request_is_one_log_line_without_its_content(server) -> None:
    before = len(server.log.read_bytes())
    answer = httpx.post(f"{server.url}/rank", json=rank_body(hour=30), headers={"x-request-id": "not sane!"})
    assert answer.status_code == 400 and answer.json()["detail"][0]["loc"] == ["context", "hour"]
    rid = answer.headers["x-request-id"]
    assert len(rid) == 32 and rid != "not sane!"
    deadline = time.monotonic() + 10
    while rid not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    written = server.log.read_bytes()[before:].decode(errors="replace")
    lines = [line for line in written.splitlines() if rid in line]
    assert len(lines) == 1, written
    assert "[INFO]" in lines[0] and "400 POST /rank" in lines[0] and "context.hour" in lines[0]
    for secret in (SECRET_USER, SECRET_DEVICE, "Traceback", "input_value"):
        assert secret not in written, f"{secret!r} in the log:\n{written}"
    assert len(written.encode()) < 1000, written  # this line plus the access-log line (2.5 KB before)
    passed = httpx.post(f"{server.url}/rank", json=rank_body(hour=3), headers={"x-request-id": "trace-42"})
    assert passed.headers["x-request-id"] == "trace-42"


def _new_log(server: Server, before: int, marker: str) -> str:
    """The log written since byte `before`, once `marker` (a request id) has reached it."""
    deadline = time.monotonic() + 10
    while marker not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.log.read_bytes()[before:].decode(errors="replace")


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # every control character but tab and newline


def test_client_chosen_keys_never_reach_the_log(server) -> None:
    """An unknown key is the client's own text: it is counted in the 400 line, never written. Before, the line
    named it raw (an e-mail address; a newline that forged an [ERROR] line of another logger; control bytes)."""
    forged = "x@example.com\n2026-12-03T12:00:00+0000 [ERROR] [cscnn.forged] admin token leaked"
    body = rank_body(hour=3)
    body["user"][forged] = 1
    body["\x1b[31m\x00ctl"] = 2
    before = len(server.log.read_bytes())
    answer = httpx.post(f"{server.url}/rank", json=body, headers={"x-request-id": "keys-1"})
    assert answer.status_code == 400
    written = _new_log(server, before, "keys-1")
    lines = [line for line in written.splitlines() if "keys-1" in line]
    assert len(lines) == 1 and "2 unknown fields [extra_forbidden]" in lines[0], written
    for secret in ("example.com", "forged", "admin token", "ctl"):
        assert secret not in written, f"{secret!r} in the log:\n{written}"
    assert not CONTROL.search(written), repr(written)


def test_anonymous_reloads_are_counted_not_logged_one_by_one(server) -> None:
    """Refused admin calls write one line per kind and minute, not one per request (7,581 in a fuzzing run)."""
    before = len(server.log.read_bytes())
    with httpx.Client(base_url=server.url) as client:
        for n in range(40):
            answer = client.post("/admin/reload", json={}, headers={"Authorization": f"Bearer wrong-{n}"})
            assert answer.status_code == 401
        client.post("/rank", json=rank_body(hour=3), headers={"x-request-id": "after-reloads"})
    written = _new_log(server, before, "after-reloads")
    assert len([line for line in written.splitlines() if "401 POST /admin/reload" in line]) <= 1, written


def test_a_time_with_no_utc_hour_is_a_400_naming_ts(server) -> None:
    """An offset that moves a time before year 1 or past year 9999 in UTC parses, but has no UTC hour: 400 on
    `context.ts`, where it was an OverflowError (500). The same instants' representable twins are served."""
    with httpx.Client(base_url=server.url) as client:
        for ts in ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"):
            answer = client.post("/rank", json=rank_body(ts=ts))
            assert answer.status_code == 400, (ts, answer.text)
            assert answer.json()["detail"][0]["loc"] == ["context", "ts"], answer.text
        for ts in ("0001-01-01T00:00:00-23:59", "9999-12-31T23:59:59+23:59"):
            assert client.post("/rank", json=rank_body(ts=ts)).status_code == 200, ts


@st.composite
def timestamps(draw) -> str:
    """ISO 8601 date-times at the edges: years 1 and 9999, second 60 (a leap second), hour 24, offsets up to
    +-24:00 and with seconds, fractions of 1-9 digits, naive values."""
    edges = ["0001-01-01", "0001-01-02", "9999-12-31", "9999-12-30", "2016-12-31", "2024-02-29", "2026-02-29"]
    random = st.builds("{:04d}-{:02d}-{:02d}".format, st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31))
    date = draw(st.sampled_from(edges) | st.sampled_from(edges[:4]) | random)  # the year edges more often
    clock = (draw(st.sampled_from([0, 23, 24])), draw(st.sampled_from([0, 59])), draw(st.sampled_from([0, 59, 60])))
    fraction = draw(st.sampled_from(["", ".5", ".999999", ".123456789"]))
    sign, hours, minutes = draw(st.sampled_from("+-")), draw(st.integers(0, 24)), draw(st.sampled_from([0, 1, 59]))
    offset = draw(st.sampled_from(["", "Z", "z", f"{sign}{hours:02d}:{minutes:02d}", f"{sign}{hours:02d}:00:30"]))
    return f"{date}T{clock[0]:02d}:{clock[1]:02d}:{clock[2]:02d}{fraction}{offset}"


def test_every_date_time_edge_is_served_or_a_400_naming_ts(server) -> None:
    statuses: Counter = Counter()
    with httpx.Client(base_url=server.url) as client:

        @given(ts=timestamps())
        @example(ts="0001-01-01T00:00:00+23:59")  # the two 500s a fuzzing run found
        @example(ts="9999-12-31T23:59:59-23:59")
        @settings(max_examples=150, deadline=None, derandomize=True, database=None)
        def check(ts: str) -> None:
            answer = client.post("/rank", json=rank_body(ts=ts))
            statuses[answer.status_code] += 1
            assert answer.status_code in (200, 400), (ts, answer.status_code, answer.text[:300])
            if answer.status_code == 400:
                assert [e["loc"] for e in answer.json()["detail"]] == [["context", "ts"]], (ts, answer.text)

        check()
    assert statuses[200] > 10 and statuses[400] > 10, statuses


def test_a_400_body_never_echoes_the_request_values(server) -> None:
    """The rule errors name positions and paths, not ids: before, duplicates and stray items were quoted."""
    secret = "ad-secret-4711"
    cases = [
        {**rank_body(), "candidates": ["i000001", secret, secret]},
        {**rank_body(), "items": [{"item_id": secret, "category": "c"}]},
        {**rank_body(), "items": [{"item_id": "i000001", "category": "c"}, {"item_id": "i000001", "category": "c"}]},
        {**rank_body(), "context": {"device": secret, "hour": 3, "ts": "2026-01-01T00:00:00Z"}},
        {**rank_body(), "candidates": [secret * 10]},  # over the length limit
    ]
    for body in cases:
        answer = httpx.post(f"{server.url}/rank", json=body)
        assert answer.status_code == 400 and answer.json()["detail"], answer.text
        assert secret not in answer.text and SECRET_USER not in answer.text, answer.text


def test_a_server_error_keeps_its_traceback_and_gains_the_request_id() -> None:
    record = logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/rank", "POST"), None)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert QuietClientErrors().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Exception on /rank [POST] (request_id=-)"

    try:
        request_model(3).model_validate_json(json.dumps(rank_body(hour=99)))
    except ValidationError:
        record.exc_info, record.msg, record.args = sys.exc_info(), "Exception on %s [%s]", ("/rank", "POST")
    assert QuietClientErrors().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == "400 POST /rank: invalid context.hour [less_than_equal] (request_id=-)"


# --- connections ----------------------------------------------------------------------------------------------------


def test_idle_and_slow_connections_are_closed(server) -> None:
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.settimeout(HEADER_TIMEOUT_S + 5)
    started = time.monotonic()
    assert idle.recv(100) == b""  # closed by the server: nothing was sent
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 2
    idle.close()

    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.settimeout(1)
    started = time.monotonic()
    slow.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
    with pytest.raises(OSError):  # a header every half second never completes the head
        while time.monotonic() - started < HEADER_TIMEOUT_S + 5:
            slow.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.5)
            if slow.recv(100) == b"":
                raise ConnectionResetError("closed by the server")
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 2
    slow.close()
    assert httpx.get(f"{server.url}/livez").status_code == 200


def test_slow_bodies_hold_no_ranking_slot(server) -> None:
    """256 connections that each send a request head and then a trickle of body (above the minimum rate, so
    they stay under way) hold no in-flight slot: ranking answers 200 at normal latency meanwhile, readiness
    stays 200, and each slow body gets 408 at the body deadline. Before, 64 of them took every slot (429)."""
    head = b"POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(256)]
    started = time.monotonic()
    try:
        for sock in slow:
            sock.sendall(head + b"{")
        latencies, statuses = [], Counter()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while time.monotonic() - started < BODY_TIMEOUT_S - 1.5:
                for sock in slow:
                    sock.sendall(b" " * (MIN_BODY_RATE // 2))  # twice a second: the minimum rate exactly
                tick = time.monotonic()
                while time.monotonic() - tick < 0.5:
                    sent = time.monotonic()
                    statuses[client.post("/rank", json=rank_body(hour=3)).status_code] += 1
                    latencies.append(time.monotonic() - sent)
                    statuses[f"readyz {client.get('/readyz').status_code}"] += 1
        assert set(statuses) == {200, "readyz 200"}, statuses
        assert statuses[200] > 20 and sorted(latencies)[len(latencies) // 2] < 0.1, (statuses, latencies)
        answers = Counter()
        for sock in slow:
            sock.settimeout(BODY_TIMEOUT_S + 5 - (time.monotonic() - started))
            answers[sock.recv(12)] += 1
        assert answers == {b"HTTP/1.1 408": len(slow)}, answers
        assert time.monotonic() - started < BODY_TIMEOUT_S + 2
    finally:
        for sock in slow:
            sock.close()


def test_readiness_says_when_every_in_flight_slot_is_taken(monkeypatch) -> None:
    import asyncio

    from cscnn.serving import edge

    monkeypatch.setattr(edge, "_SLOTS", None)  # this process's app, if a test built one, keeps its own
    release = asyncio.Event()

    async def app(scope, receive, send) -> None:
        await release.wait()

    async def scenario() -> list[bool]:
        slots = edge.InFlightSlots(app, max_concurrency=1)
        seen = [edge.slots_exhausted()]
        held = asyncio.ensure_future(slots({"type": "http", "path": "/rank"}, None, None))
        await asyncio.sleep(0)
        seen.append(edge.slots_exhausted())
        release.set()
        await held
        return [*seen, edge.slots_exhausted()]

    assert asyncio.run(scenario()) == [False, True, False]


def test_the_header_limit_holds_in_every_read(server) -> None:
    """A head over `max_header_bytes` (64 KiB) gets 431 and a closed connection whether it arrives in one read,
    with its body, or pipelined behind a request; before, one that completed in a single read was served (200)."""

    def exchange(payload: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(10)
            sock.sendall(payload)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    break
            return answer

    def get(header_bytes: int, close: bool = True) -> bytes:
        end = b"Connection: close\r\n\r\n" if close else b"\r\n"
        return b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes + b"\r\n" + end

    assert exchange(get(60_000)).startswith(b"HTTP/1.1 200")
    assert exchange(get(70_000)).startswith(b"HTTP/1.1 431")
    body = json.dumps(rank_body(hour=3)).encode()
    post = (
        b"POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Big: " + b"a" * 66_000
    ) + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    assert exchange(post + body).startswith(b"HTTP/1.1 431")
    pipelined = exchange(get(10, close=False) + get(70_000))  # parsed in one read: the connection is refused
    assert b"HTTP/1.1 431" in pipelined, pipelined[:500]
    assert httpx.get(f"{server.url}/livez").status_code == 200


# --- the OpenAPI document, checked against the server by schemathesis -------------------------------------------------


SCHEMATHESIS_EXAMPLES = 60  # per operation and generation mode


def _fuzz(operation, mode, statuses: Counter) -> str | None:
    """Run one operation's examples of one generation mode; the first failure as text, or None."""
    from hypothesis import Phase, given
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        positive_data_acceptance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
        positive_data_acceptance,
    ]
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is schemathesis.GenerationMode.POSITIVE:
        strategy = strategy.map(obeying_item_rules)

    @given(case=strategy)
    @settings(
        max_examples=SCHEMATHESIS_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure as found
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks)
        statuses[operation.label, response.status_code] += 1

    try:
        run()
    except Unsatisfiable:
        assert mode is schemathesis.GenerationMode.NEGATIVE  # a GET without parameters: nothing to negate
    except Exception as exc:
        return f"{operation.label} ({mode.value}): {str(exc)[:1500]}"
    return None


def obeying_item_rules(case):
    """A positive /rank case made to follow the rules of `x-cscnn-rules`: each `items[]` entry describes a
    distinct candidate (entries beyond the candidates are dropped). Applied to positive cases only: a
    schemathesis `map_body` hook runs in both modes, and would turn some negative bodies into valid ones."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("items"), list) and isinstance(body.get("candidates"), list):
        items = body["items"][: len(body["candidates"])]
        body["items"] = [{**item, "item_id": id_} for item, id_ in zip(items, body["candidates"], strict=False)]
    return case


def test_the_service_answers_as_its_openapi_document_says(server) -> None:
    """Schemathesis, positive and negative examples of every operation in GET /docs.json, against the server:
    no 5xx, every answer's status, content type, headers and body as documented, invalid data refused and
    valid data accepted. Two rules of /rank (each `items[].item_id` among the candidates, and once) are not
    JSON Schema; the document states them in `x-cscnn-rules`, and positive cases follow them
    (`obeying_item_rules`). (Hypothesis drives the cases directly: schemathesis' lazy pytest integration does
    not run under pytest 9.)"""
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    schema.config.update(base_url=server.url)
    statuses: Counter = Counter()
    failures = [
        failure
        for result in schema.get_all_operations()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        if (failure := _fuzz(result.ok(), mode, statuses)) is not None
    ]
    assert not failures, "\n\n".join(failures)
    assert statuses["POST /rank", 200] > 10 and statuses["POST /rank", 400] > 10, statuses
    assert statuses["POST /admin/reload", 200] > 10, statuses


# --- the registry's table tag as a cache path ---------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["..", "../..", "/etc", "a/../../b", "a//b", ".hidden", "a\\b", "x" * 300, ""])
def test_an_unsafe_table_tag_never_becomes_a_path(tag) -> None:
    with pytest.raises(UnsafeTagError):
        cache_key(tag)


def test_a_plain_table_tag_is_its_own_cache_key(monkeypatch) -> None:
    assert cache_key("embeddings/2026-01-08") == "embeddings_2026-01-08"
    assert cache_key("full") == "full"

    def fetch(*_args, **_kwargs):
        raise AssertionError("an unsafe tag reached the registry's cache")

    from cscnn.serving.schemas import ServedModel
    from cscnn.tools import model_registry

    monkeypatch.setattr(model_registry, "fetch", fetch)
    monkeypatch.setattr(
        model_registry,
        "get_version",
        lambda *_a, **_k: model_registry.ModelRef(
            name="m", version="1", run_id="r", fingerprint="f", embeddings="../.."
        ),
    )
    with pytest.raises(UnsafeTagError):
        RegistrySource().load(ServedModel(name="m", version="1", fingerprint="f", embeddings="../.."))


def test_the_registry_fetch_refuses_an_unsafe_tag_before_any_download(tmp_path, monkeypatch) -> None:
    # The daily loop and the package check call `model_registry.fetch` directly, not through the service's source.
    from cscnn.state import State
    from cscnn.tools import model_registry

    monkeypatch.setattr(model_registry, "client", lambda *_a, **_k: None)
    ref = model_registry.ModelRef(
        name="m", version="1", run_id="r", fingerprint="f", embeddings="embeddings/../../../x"
    )
    with pytest.raises(UnsafeTagError):
        model_registry.fetch(ref, State(tmp_path))
    assert not (tmp_path / "model-cache").exists()
