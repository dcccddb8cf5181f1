"""The connection edge: what the HTTP server does before any ASGI code runs, and the route label of metrics.

BentoML starts uvicorn itself and exposes only its keep-alive timeout (`--timeout-keep-alive`), and uvicorn
starts that timer only after a response: a client that connects and sends nothing, or sends its request head
a byte at a time, holds its connection (and a file descriptor) for ever. `EdgeProtocol` is uvicorn's own HTTP
protocol (httptools) with these limits of `ServeConfig`:

    header_timeout_s      a connection must complete each request head within this many seconds of its first
                          byte (of connecting, for the first request), or it is closed
    max_header_bytes      a request head larger than this is answered 431 and the connection closed, whether
                          the head arrives in one read or in many (counted as the parser sees it, and per read)
    body_timeout_s        a request body must arrive whole within this many seconds of its head, and
    min_body_bytes_per_s  after its first second at this average rate, or it is answered 408 (`WholeBody`)
    max_connections       connections of one worker beyond this are closed as they are accepted
    keepalive_timeout_s   uvicorn's keep-alive timeout, from the same config

uvicorn hands a request to the app as soon as its head is parsed, and BentoML takes one of its in-flight slots
(`traffic.max_concurrency`) before its handler reads the body: 64 clients that each sent a head and then one
body byte every 2 s held every slot, and every `/rank` got 429. `WholeBody`, in front of the whole ASGI app,
reads the body first, under the body deadline, so a request takes a slot only once it is complete.

It also puts `BoundedPaths` in front of the whole ASGI app, BentoML's metrics middleware included: that
middleware labels every request with its raw path, so each distinct junk URL would add ~20 series to
`/metrics`. Paths the service does not serve reach it as one path, `UNMATCHED` (the router answers 404).

`install` points uvicorn's "auto" HTTP protocol at `EdgeProtocol`, and BentoML's request timeout and in-flight
limit at `RequestTimeout` and `InFlightSlots`. bento/service.py calls it at import, which the BentoML worker does
before it builds its `uvicorn.Config` and its middleware; nothing else in the process serves HTTP.

`RequestTimeout` is BentoML's `TimeoutMiddleware` (504 when no answer has started within `traffic.timeout`) that
also cancels its timer once the answer starts. BentoML's never does: each request's timer stays scheduled for
the whole timeout (30 s), holding the request's context, and with it its OpenTelemetry span, a future and their
~13 tracked objects. At 130 requests/s that is ~50,000 objects alive at any time for nothing, and the garbage
collector's full passes (which walk them all, with the event loop stopped) grow with the request rate.

`InFlightSlots` is BentoML's `MaxConcurrencyMiddleware` (429 when every slot is taken) whose state readiness can
read (`slots_exhausted`): with every slot taken, `/readyz` answers 503, so a load balancer sends elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from cscnn.config import ServeConfig
from cscnn.serving.schemas import max_body_bytes, replaying

UNMATCHED = "/unmatched"
BODY_GRACE_S = 1.0  # a body's first second is not held to the minimum rate (`WholeBody`)
HEAD_TOO_LARGE = 431
SYSTEM_ROUTES = ("/", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json")


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout_s: float
    max_header_bytes: int
    body_timeout_s: float
    min_body_bytes_per_s: float
    max_body_bytes: int
    max_connections: int
    keepalive_timeout_s: int
    known_paths: frozenset[str]

    @classmethod
    def from_config(cls, serve: ServeConfig, api_routes: Iterable[str]) -> EdgeLimits:
        return cls(
            header_timeout_s=serve.header_timeout_s,
            max_header_bytes=serve.max_header_bytes,
            body_timeout_s=serve.body_timeout_s,
            min_body_bytes_per_s=serve.min_body_bytes_per_s,
            max_body_bytes=max_body_bytes(serve.max_candidates),
            max_connections=serve.max_connections,
            keepalive_timeout_s=serve.keepalive_timeout_s,
            known_paths=frozenset([*SYSTEM_ROUTES, *api_routes, *static_paths()]),
        )


_LIMITS: EdgeLimits | None = None


def install(limits: EdgeLimits) -> None:
    """Serve HTTP with `EdgeProtocol` under `limits` in this process (uvicorn's "auto" protocol)."""
    import uvicorn.config
    from bentoml._internal.server.http import traffic

    global _LIMITS
    _LIMITS = limits
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:EdgeProtocol"
    traffic.TimeoutMiddleware = RequestTimeout  # BentoML imports both from there when it builds the app
    traffic.MaxConcurrencyMiddleware = InFlightSlots


def static_paths() -> list[str]:
    """The files of BentoML's docs page (`/static_content/...`): a fixed set, so each is its own label."""
    from bentoml._internal import server

    folder = Path(server.__file__).parent / "static_content"
    return [f"/static_content/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()]


class BoundedPaths:
    """ASGI wrapper: a request for a path the service does not serve is passed on with the path `UNMATCHED`."""

    def __init__(self, app, known_paths: frozenset[str]) -> None:
        self.app = app
        self.known_paths = known_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in self.known_paths:
            scope = {**scope, "path": UNMATCHED, "raw_path": UNMATCHED.encode(), "root_path": ""}
        await self.app(scope, receive, send)


class WholeBody:
    """ASGI wrapper in front of everything else: a request with a body goes on to the app only once its body has
    arrived, within `body_timeout_s` of its head and, after `BODY_GRACE_S`, at `min_body_bytes_per_s` on
    average; a slower one is answered 408 and its connection closed. A body over `max_bytes` goes on as it is,
    unread beyond that, for `BodyLimit` to answer 413."""

    def __init__(self, app, limits: EdgeLimits) -> None:
        self.app = app
        self.timeout_s = limits.body_timeout_s
        self.min_rate = limits.min_body_bytes_per_s
        self.max_bytes = limits.max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        started = asyncio.get_running_loop().time()
        chunks: list[bytes] = []
        size, more = 0, True
        try:
            async with asyncio.timeout_at(started + self._allowance(0)) as deadline:
                while more and size <= self.max_bytes:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    more = message.get("more_body", False)
                    deadline.reschedule(started + self._allowance(size))
        except TimeoutError:
            await _answer(
                send,
                408,
                f"request body not received within {self.timeout_s:g} s "
                f"(or slower than {self.min_rate:g} bytes/s after {BODY_GRACE_S:g} s)",
            )
            return
        await self.app(scope, replaying(b"".join(chunks), more, receive), send)

    def _allowance(self, received: int) -> float:
        """Seconds from the head by which the next body byte must have arrived, with `received` bytes in."""
        return min(self.timeout_s, BODY_GRACE_S + received / self.min_rate)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any((name == b"content-length" and value != b"0") or name == b"transfer-encoding" for name, value in headers)


async def _answer(send, status: int, message: str) -> None:
    """An error answer that closes the connection (its request was not read to the end)."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class InFlightSlots:
    """ASGI middleware: BentoML's `MaxConcurrencyMiddleware` (429 when `max_concurrency` requests are in flight;
    probes and metrics bypass it) whose slots readiness reads (`slots_exhausted`)."""

    BYPASS_PATHS = frozenset({"/metrics", "/healthz", "/livez", "/readyz"})

    def __init__(self, app, max_concurrency: int, skip_paths: Iterable[str] = ()) -> None:
        global _SLOTS
        self.app = app
        self.skip_paths = frozenset([*skip_paths, *self.BYPASS_PATHS])
        self._slots = _SLOTS = asyncio.Semaphore(max_concurrency)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
        elif self._slots.locked():
            await _answer_busy(scope, receive, send)
        else:
            async with self._slots:
                await self.app(scope, receive, send)


_SLOTS: asyncio.Semaphore | None = None  # the in-flight slots of this process's app (`InFlightSlots`)


def slots_exhausted() -> bool:
    """True while every in-flight slot of this worker is taken (a new request would get 429)."""
    return _SLOTS is not None and _SLOTS.locked()


async def _answer_busy(scope, receive, send) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse({"error": "Too many requests"}, status_code=429)(scope, receive, send)


class RequestTimeout:
    """ASGI middleware: 504 when the app has not started its answer within `timeout` seconds (as BentoML's
    `TimeoutMiddleware`), with the timer cancelled as soon as the answer starts."""

    def __init__(self, app, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        timer = loop.call_later(self.timeout, _time_out, started)

        async def send_started(message) -> None:
            if not started.done():
                started.set_result(None)
                timer.cancel()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, send_started))
        task.add_done_callback(lambda _: started.done() or started.set_result(None))  # failed before answering
        try:
            await started
        except TimeoutError:
            if task.cancel():
                from starlette.responses import JSONResponse

                answer = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"}, 504)
                await answer(scope, receive, send)
            return
        finally:
            timer.cancel()
        await task


def _time_out(started: asyncio.Future) -> None:
    if not started.done():
        started.set_exception(TimeoutError)


class EdgeProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol with a request-head deadline and size limit, a connection cap, and
    `BoundedPaths` around the app."""

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits = _LIMITS or EdgeLimits.from_config(ServeConfig(), [])
        self.timeout_keep_alive = self.limits.keepalive_timeout_s
        wrapped = getattr(config, "_cscnn_edge_app", None)
        if wrapped is None:
            wrapped = WholeBody(BoundedPaths(self.app, self.limits.known_paths), self.limits)
            config._cscnn_edge_app = wrapped
        self.app = wrapped
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received while a head is incomplete, over reads
        self._head_size = 0  # the current head as the parser has seen it: request target and headers

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport is None or self.transport.is_closing():
            return
        if self._awaiting_head():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse_head()
            elif self._head_deadline is None:
                self._arm()  # the first bytes of the next request on a kept-alive connection
        else:
            self._head_bytes = 0
            self._disarm()

    # httptools' callbacks: they see each head whole, also one that arrives in a single read with its body, or
    # pipelined behind another request, which the byte count of `data_received` does not.
    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.limits.max_header_bytes:
            raise HeadTooLargeError  # stops the parser; uvicorn then calls `send_400_response`

    def send_400_response(self, msg: str) -> None:
        if self._head_size > self.limits.max_header_bytes:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        body = json.dumps({"error": f"request head over the limit of {self.limits.max_header_bytes} bytes"})
        self.transport.write(
            f"HTTP/1.1 {HEAD_TOO_LARGE} Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}".encode()
        )
        self.transport.close()

    def _awaiting_head(self) -> bool:
        """True between requests and while a request head is arriving; False once a head is complete and its
        request (body and response) is in progress."""
        cycle = self.cycle
        return cycle is None or (cycle.response_complete and not cycle.more_body)

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._awaiting_head() and self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class HeadTooLargeError(Exception):
    """Raised in a parser callback when a request head passes `max_header_bytes`."""
