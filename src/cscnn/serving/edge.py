"""The connection edge: what the HTTP server does before any ASGI code runs, and the route label of metrics.

BentoML starts uvicorn itself and exposes only its keep-alive timeout (`--timeout-keep-alive`), and uvicorn
starts that timer only after a response: a client that connects and sends nothing, or sends its request head
a byte at a time, holds its connection (and a file descriptor) for ever. `EdgeProtocol` is uvicorn's own HTTP
protocol (httptools, or h11 without it) with three limits of `ServeConfig`:

    header_timeout_s     a connection must complete each request head within this many seconds of its first
                         byte (of connecting, for the first request), or it is closed
    max_header_bytes     a request head larger than this closes the connection
    max_connections      connections of one worker beyond this are closed as they are accepted
    keepalive_timeout_s  uvicorn's keep-alive timeout, from the same config

It also puts `BoundedPaths` in front of the whole ASGI app, BentoML's metrics middleware included: that
middleware labels every request with its raw path, so each distinct junk URL would add ~20 series to
`/metrics`. Paths the service does not serve reach it as one path, `UNMATCHED` (the router answers 404).

`install` points uvicorn's "auto" HTTP protocol at `EdgeProtocol`, and BentoML's request timeout at
`RequestTimeout`. bento/service.py calls it at import, which the BentoML worker does before it builds its
`uvicorn.Config` and its middleware; nothing else in the process serves HTTP.

`RequestTimeout` is BentoML's `TimeoutMiddleware` (504 when no answer has started within `traffic.timeout`) that
also cancels its timer once the answer starts. BentoML's never does: each request's timer stays scheduled for
the whole timeout (30 s), holding the request's context, and with it its OpenTelemetry span, a future and their
~13 tracked objects. At 130 requests/s that is ~50,000 objects alive at any time for nothing, and the garbage
collector's full passes (which walk them all, with the event loop stopped) grow with the request rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from cscnn.config import ServeConfig

UNMATCHED = "/unmatched"
SYSTEM_ROUTES = ("/", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json")


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout_s: float
    max_header_bytes: int
    max_connections: int
    keepalive_timeout_s: int
    known_paths: frozenset[str]

    @classmethod
    def from_config(cls, serve: ServeConfig, api_routes: Iterable[str]) -> EdgeLimits:
        return cls(
            header_timeout_s=serve.header_timeout_s,
            max_header_bytes=serve.max_header_bytes,
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
    traffic.TimeoutMiddleware = RequestTimeout  # BentoML imports it from there when it builds the app


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
        wrapped = getattr(config, "_cscnn_bounded_app", None)
        if wrapped is None:
            wrapped = BoundedPaths(self.app, self.limits.known_paths)
            config._cscnn_bounded_app = wrapped
        self.app = wrapped
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

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
                self.transport.close()
            elif self._head_deadline is None:
                self._arm()  # the first bytes of the next request on a kept-alive connection
        else:
            self._head_bytes = 0
            self._disarm()

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
