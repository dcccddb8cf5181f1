"""The CSCNN ranking service (BentoML). A thin wrapper: the logic is in the `cscnn.serving` modules.

    POST /rank            rank a request's candidates by predicted click probability (see bento/README.md)
    POST /admin/reload    ask the registry now instead of waiting for the next poll (bearer token: CSCNN_ADMIN_TOKEN)
    GET  /readyz          200 once a model is loaded and an in-flight slot is free, 503 otherwise
    GET  /livez, /healthz 200 while the process answers
    GET  /metrics         Prometheus: BentoML's request metrics plus cscnn_served_model{version,...}
    GET  /docs.json       the OpenAPI document (cscnn.serving.openapi)

Every request passes `cscnn.serving.edge` (connection limits, bounded metric labels) and
`cscnn.serving.security.RequestGuard` (request id, admin token, JSON only) before BentoML parses it.

Configuration is by environment (see `cscnn.serving.sources.source_from_env` and `serve_config_from_env`). The
model is not packed into the bento: the service follows the registry's `champion` alias, so a promotion
reaches the running service without a rebuild or a restart.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from http import HTTPStatus

import bentoml
from starlette.responses import Response

from cscnn import settings
from cscnn.errors import CSCNNError
from cscnn.serving import edge
from cscnn.serving.hotswap import ModelHolder, NotReadyError
from cscnn.serving.openapi import openapi_document
from cscnn.serving.schemas import (
    BodyLimit,
    Context,
    ItemFeatures,
    RankRequest,
    RankResponse,
    ReloadResult,
    RequestError,
    ServedModel,
    User,
    max_body_bytes,
    request_model,
)
from cscnn.serving.security import RequestGuard, admin_token, error_body, quiet_bentoml_errors, request_id
from cscnn.serving.sources import serve_config_from_env, source_from_env

log = logging.getLogger(__name__)

SERVE = serve_config_from_env()  # at import: the request schema carries the candidate limit
RankInput = request_model(SERVE.max_candidates)


class ServiceMetrics:
    """The service's own Prometheus metrics, once per process.

    `prometheus_client` is imported here, at service start, not at module import: BentoML points it at its
    multiprocess directory in between.
    """

    _instance: ServiceMetrics | None = None

    def __init__(self) -> None:
        from prometheus_client import Counter as PromCounter
        from prometheus_client import Gauge, Histogram

        self.served = Gauge(
            "cscnn_served_model",
            "1 for the model version this worker serves (0 for versions it served before)",
            ["name", "version", "fingerprint", "embeddings"],
            multiprocess_mode="liveall",
        )
        self.swaps = PromCounter("cscnn_model_swaps_total", "model versions loaded and swapped in")
        self.reload_failures = PromCounter("cscnn_model_reload_failures_total", "failed reloads (old model kept)")
        self.candidates = Histogram(
            "cscnn_rank_candidates", "candidates per request", buckets=(1, 10, 50, 100, 200, 500, 1000, 5000)
        )
        self.fallbacks = PromCounter("cscnn_rank_fallback_items_total", "ranked items that used a fallback", ["flag"])
        self.unknown_users = PromCounter("cscnn_rank_unknown_users_total", "requests from users new to the model")

    @classmethod
    def get(cls) -> ServiceMetrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def swapped(self, previous: ServedModel | None, current: ServedModel) -> None:
        if previous is not None:
            self.served.labels(**_labels(previous)).set(0)
        self.served.labels(**_labels(current)).set(1)
        self.swaps.inc()

    def reload_failed(self, _exc: Exception) -> None:
        self.reload_failures.inc()

    def ranked(self, response: RankResponse) -> None:
        self.candidates.observe(len(response.items))
        if not response.user_known:
            self.unknown_users.inc()
        # Items share one tuple per flag combination (FLAG_SETS): count the tuples, then their flags.
        for flags, count in Counter(item["flags"] for item in response.items).items():
            for flag in flags:
                self.fallbacks.labels(flag=flag).inc(count)


def _labels(model: ServedModel) -> dict[str, str]:
    return {
        "name": model.name,
        "version": model.version,
        "fingerprint": model.fingerprint,
        "embeddings": model.embeddings or "",
    }


@bentoml.service(
    name="cscnn-ranker",
    workers=settings.read("CSCNN_SERVE_WORKERS"),
    traffic={"timeout": SERVE.request_timeout_s, "max_concurrency": SERVE.max_concurrency},
)
class RankingService:
    def __init__(self) -> None:
        import torch

        torch.set_num_threads(max(1, settings.read("CSCNN_TORCH_THREADS")))
        self.metrics = ServiceMetrics.get()
        self.holder = ModelHolder(
            source_from_env(SERVE), SERVE, on_swap=self.metrics.swapped, on_error=self.metrics.reload_failed
        )
        loaded = self.holder.reload()  # a version that is named but cannot load stops the start, loudly
        if loaded.model is None:
            log.warning(
                "nothing to serve yet from %r; not ready, polling every %ss", self.holder.source, SERVE.poll_seconds
            )
        self.holder.start_polling()
        freeze_startup_objects()

    @bentoml.on_shutdown
    def stop_polling(self) -> None:
        self.holder.stop()

    def __is_ready__(self) -> bool:
        """A model is loaded and an in-flight slot is free: with every slot taken a new request would get 429."""
        return self.holder.ready and not edge.slots_exhausted()

    # `async` on purpose: the 1-10 ms of CPU work runs on the event loop. As a sync API it would run in a worker
    # thread, and the GIL hand-offs between that thread and the loop cost more than the work itself (200
    # candidates: p50 4.7 -> 3.1 ms, p99 9.7 -> 5.2 ms on 2 cores). A worker ranks one request at a time either
    # way; scale with CSCNN_SERVE_WORKERS. The slow call, /admin/reload, stays sync and off the loop.
    @bentoml.api(input_spec=RankInput)
    async def rank(
        self, user: User, context: Context, candidates: list[str], items: list[ItemFeatures] | None = None
    ) -> RankResponse:
        """Rank the candidates for this user and context, best first, with the model version that scored them."""
        request = RankRequest.model_construct(user=user, context=context, candidates=candidates, items=items or [])
        try:
            response = self.holder.rank(request)
        except RequestError as exc:
            return _error(HTTPStatus.BAD_REQUEST, str(exc))
        except NotReadyError as exc:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        self.metrics.ranked(response)
        # BentoML serialises it. Returning a pre-serialised JSON Response (the same bytes) measured slower
        # (281-326 vs 390-414 req/s at 200 x 8, docs/benchmarks.md), so the model is returned as is.
        return response

    @bentoml.api(route="/admin/reload")
    def reload(self) -> ReloadResult:
        """Check the registry now and swap in the version it names, if another one is serving."""
        try:
            return self.holder.reload()
        except CSCNNError as exc:
            self.metrics.reload_failed(exc)
            return _error(HTTPStatus.CONFLICT, str(exc))


def freeze_startup_objects() -> None:
    """Move every object alive after start (torch, pandas, BentoML, the model: ~300,000 of them) out of the
    garbage collector's reach. A full collection walks every tracked object; with these in it, each took
    150-290 ms on this machine, stopping the event loop, and at 1,000 candidates a request allocates enough
    container objects that one ran every ~100 requests: the 1000 x 8 p99 (267 ms against a p50 of 54).
    Frozen objects are never collected (they live as long as the process anyway); new garbage still is."""
    gc.collect()
    gc.freeze()


def _error(status: HTTPStatus, message: str) -> Response:
    """An error answer with the service's error body (BentoML's own wraps a 4xx body in a list)."""
    log.warning("%d: %s (request_id=%s)", status, message, request_id())
    return Response(error_body(message), status_code=status, media_type="application/json")


API_ROUTES = [api.route for api in RankingService.apis.values()]
edge.install(edge.EdgeLimits.from_config(SERVE, API_ROUTES))
quiet_bentoml_errors()
RankingService.add_asgi_middleware(
    RequestGuard,
    api_routes=API_ROUTES,
    admin_routes=["/admin/reload"],
    openapi=lambda: openapi_document(RankInput),
    token=admin_token(),
)
RankingService.add_asgi_middleware(BodyLimit, max_bytes=max_body_bytes(SERVE.max_candidates))
