"""The request guard: what every HTTP request passes before BentoML parses it, and how errors are logged.

`RequestGuard` (an ASGI middleware, added by bento/service.py) gives each request an id, answers it in the
`X-Request-ID` response header, and checks, in this order:

    admin routes (POST)   a bearer token equal to `CSCNN_ADMIN_TOKEN` (constant-time compare): 401 without it
                          or with another one; 403 for every caller when no token is configured (disabled)
    API routes (POST)     a JSON body: any other content type is 415 (so a cross-origin `text/plain` or form
                          POST, the kind a browser sends without a preflight, never reaches a handler)
    GET /docs.json        the service's own OpenAPI document (`cscnn.serving.openapi`), instead of BentoML's

The service sends no CORS headers (BentoML's CORS is off), so a browser on another origin cannot read an answer
or send a preflighted request either.

Each refusal is logged through `RefusalLog`: one line for the first of its kind in a minute, then a count.

`QuietClientErrors` is a logging filter on BentoML's request-error logger: BentoML logs every rejected request
at ERROR with a traceback whose text carries the request's values (user ids, context). The filter rewrites a
validation error into one INFO line with the status, the route and the offending fields by the schema's own
names (`error_fields`: unknown keys counted, never written), and adds the request id to any other error (which
keeps its traceback). No text of the request but its sanitised id reaches a log line.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable

from cscnn import settings

ADMIN_TOKEN_ENV = "CSCNN_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16
REQUEST_ID_HEADER = "x-request-id"
BENTOML_ERROR_LOGGER = "bentoml._internal.server.http_app"  # where BentoML's `log_exception` writes
JSON_TYPES = frozenset({"application/json"})
REFUSAL_LOG_INTERVAL_S = 60.0  # one log line per kind of refusal and interval (`RefusalLog`)

_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("cscnn_request_id", default="-")
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
log = logging.getLogger(__name__)


def request_id() -> str:
    """The id of the request being served ("-" outside a request)."""
    return _REQUEST_ID.get()


def admin_token(environ: dict[str, str] | None = None) -> str | None:
    """The configured admin token, or None (admin endpoints disabled) when unset or too short to be a secret."""
    token = settings.read(ADMIN_TOKEN_ENV, environ) or ""
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        log.warning(
            "%s is shorter than %d characters: admin endpoints stay disabled", ADMIN_TOKEN_ENV, MIN_TOKEN_LENGTH
        )
        return None
    return token


def bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def media_type(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"content-type")
    if raw is None:
        return None
    return raw.decode("latin-1").split(";", 1)[0].strip().lower()


class RequestGuard:
    """ASGI middleware: request ids, admin authentication, JSON-only bodies, the OpenAPI document."""

    def __init__(
        self,
        app,
        *,
        api_routes: Iterable[str],
        admin_routes: Iterable[str],
        openapi: Callable[[], dict],
        token: str | None = None,
        refusal_log_interval_s: float = REFUSAL_LOG_INTERVAL_S,
    ) -> None:
        self.app = app
        self.refusals = RefusalLog(refusal_log_interval_s)
        self.api_routes = frozenset(api_routes)
        self.admin_routes = frozenset(admin_routes)
        self.token = token
        self._openapi = openapi
        self._openapi_body: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        reset = _REQUEST_ID.set(rid)

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            refusal = self.refusal(scope["method"], scope["path"], headers)
            if refusal is not None:
                status, body, extra = refusal
                self.refusals.refused(status, scope["method"], scope["path"], body.decode(), rid)
                await self.answer(send_with_id, status, body, extra)
            elif scope["method"] in ("GET", "HEAD") and scope["path"] == "/docs.json":
                await self.answer(send_with_id, 200, self.openapi_body())
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(reset)

    def refusal(self, method: str, path: str, headers: dict[bytes, bytes]) -> tuple[int, bytes, list] | None:
        """(status, body, extra headers) when the request must not reach BentoML; None when it may."""
        if method != "POST":
            return None  # other methods on these routes are the router's 405
        if path in self.admin_routes:
            if self.token is None:
                return _error(403, f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV} to enable them")
            if not bearer_matches(headers.get(b"authorization", b"").decode("latin-1"), self.token):
                return _error(401, "admin endpoint: send 'Authorization: Bearer <token>'", www_authenticate=True)
        if path in self.api_routes or path in self.admin_routes:
            kind = media_type(headers)
            has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
            if (kind is not None and kind not in JSON_TYPES) or (kind is None and has_body):
                return _error(415, "send the body as 'Content-Type: application/json'")
        return None

    def openapi_body(self) -> bytes:
        if self._openapi_body is None:
            self._openapi_body = json.dumps(self._openapi()).encode()
        return self._openapi_body

    @staticmethod
    async def answer(send, status: int, body: bytes, extra: list | None = None) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})


class RefusalLog:
    """The guard's refusals in the log: the first of each kind (status, method, route) is one line, the rest of
    its interval are one count at the interval's end. One line per request let any client grow the log on
    demand (7,581 WARNING lines for as many anonymous `/admin/reload` calls in one fuzzing run). The keys are
    the guard's own routes, so there are a handful at most."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._counts: dict[tuple[int, str, str], int] = {}

    def refused(self, status: int, method: str, path: str, message: str, rid: str) -> None:
        key = (status, method, path)
        if key in self._counts:
            self._counts[key] += 1
            return
        log.log(_level(status), "%d %s %s: %s (request_id=%s)", status, method, path, message, rid)
        self._open(key)

    def _open(self, key: tuple[int, str, str]) -> None:
        self._counts[key] = 0
        asyncio.get_running_loop().call_later(self.interval_s, self._close, key)

    def _close(self, key: tuple[int, str, str]) -> None:
        count = self._counts.pop(key, 0)
        if count:
            status, method, path = key
            log.log(_level(status), "%d %s %s: %d more in the last %g s", status, method, path, count, self.interval_s)
            self._open(key)  # still under way: keep counting


def _level(status: int) -> int:
    return logging.WARNING if status in (401, 403) else logging.INFO


def _error(status: int, message: str, www_authenticate: bool = False) -> tuple[int, bytes, list]:
    extra = [(b"www-authenticate", b'Bearer realm="cscnn-admin"')] if www_authenticate else []
    return status, error_body(message), extra


def error_body(message: str) -> bytes:
    """The service's error answer: `{"error": message}` (see `cscnn.serving.schemas.ErrorBody`)."""
    return json.dumps({"error": message}).encode()


# --- logs -------------------------------------------------------------------------------------------------------

MAX_LOGGED_FIELDS = 5


def error_fields(exc) -> str:
    """The offending fields of a pydantic ValidationError by the schema's own names, e.g. 'candidates [too_long],
    context.hour [less_than_equal]'. A key the client made up is counted, never written: it is the client's own
    text (an e-mail address, or a newline that forges a log line); a path part that is not a field of the
    request models (`FIELD_NAMES`) or a list index is written as '?'."""
    from cscnn.serving.schemas import FIELD_NAMES

    fields, unknown = [], 0
    for error in exc.errors(include_input=False, include_context=False, include_url=False):
        if error["type"] == "extra_forbidden":
            unknown += 1
            continue
        parts = [str(part) if isinstance(part, int) or part in FIELD_NAMES else "?" for part in error["loc"]]
        kind = error["type"] if _ERROR_TYPE.fullmatch(error["type"]) else "?"
        fields.append(f"{'.'.join(parts) or '(body)'} [{kind}]")
    shown = fields[:MAX_LOGGED_FIELDS]
    if len(fields) > len(shown):
        shown.append(f"{len(fields) - len(shown)} more")
    if unknown:
        shown.append(f"{unknown} unknown field{'s' if unknown > 1 else ''} [extra_forbidden]")
    return ", ".join(shown)


_ERROR_TYPE = re.compile(r"[a-z_]{1,64}")  # pydantic's error types: 'missing', 'less_than_equal', ...


class QuietClientErrors(logging.Filter):
    """Rewrites BentoML's `Exception on <path> [<method>]` records: a validation error (a 400) becomes one INFO
    line naming the fields; any other error keeps its traceback and gains the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from pydantic import ValidationError

        where = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        if isinstance(exc, ValidationError):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.msg = "400 %s %s: invalid %s (request_id=%s)"
            record.args = (where[1], where[0], error_fields(exc), request_id())
            record.exc_info, record.exc_text = None, None
        else:
            record.msg = f"{record.msg} (request_id=%s)"
            record.args = (*where, request_id())
        return True


def quiet_bentoml_errors() -> None:
    """Install `QuietClientErrors` once on BentoML's request-error logger."""
    logger = logging.getLogger(BENTOML_ERROR_LOGGER)
    if not any(isinstance(f, QuietClientErrors) for f in logger.filters):
        logger.addFilter(QuietClientErrors())
