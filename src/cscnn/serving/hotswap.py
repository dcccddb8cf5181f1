"""Hot swap: the `ModelHolder` that serves one `Ranker` and replaces it when its source names another version.

A new champion is loaded next to the serving bundle and replaces it in one reference assignment, so a request
sees either the old bundle or the new one, never a mix, and nothing waits for the load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cscnn.config import ServeConfig
from cscnn.errors import CSCNNError
from cscnn.serving.schemas import RankRequest, RankResponse, ReloadResult, RequestError, ServedModel, request_model
from cscnn.serving.sources import ModelSource

if TYPE_CHECKING:  # torch comes with the first model, not with the module: `bentoml build` and the arbiter skip it
    from cscnn.serving.ranker import Ranker

log = logging.getLogger(__name__)


class NotReadyError(CSCNNError):
    """No model is loaded yet (no champion, or its first load failed)."""


class ModelHolder:
    """Holds the serving `Ranker` and replaces it when the source names another version.

    Requests read `current` once and rank with that bundle; `reload` builds the next bundle beside it and
    swaps one reference, so in-flight requests finish on the old one and none waits or fails. Reloads are
    serialised by a lock; a failed load keeps the old bundle serving and is retried on the next poll.
    """

    def __init__(
        self,
        source: ModelSource,
        serve: ServeConfig,
        on_swap: Callable[[ServedModel | None, ServedModel], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.source = source
        self.serve = serve
        self.request_model = request_model(serve.max_candidates)
        self._current: Ranker | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._on_swap = on_swap
        self._on_error = on_error

    @property
    def current(self) -> Ranker | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def swap(self, ranker: Ranker) -> None:
        previous = self._current
        self._current = ranker
        log.info("serving model %s version %s", ranker.served.name, ranker.served.version)
        if self._on_swap is not None:
            self._on_swap(previous.served if previous else None, ranker.served)

    def reload(self) -> ReloadResult:
        """Ask the source which version should serve; load and swap when it is not the one serving."""
        started = time.perf_counter()
        with self._reload_lock:
            target = self.source.resolve()
            current = self._current
            if target is None or (current is not None and current.served == target):
                served = current.served if current else None
                return ReloadResult(swapped=False, model=served, seconds=time.perf_counter() - started)
            self.swap(self.source.load(target))
            return ReloadResult(swapped=True, model=target, seconds=time.perf_counter() - started)

    def rank(self, request: RankRequest) -> RankResponse:
        ranker = self._current
        if ranker is None:
            raise NotReadyError("no model loaded yet (is the alias set, and does its version have a table?)")
        if len(request.candidates) > self.serve.max_candidates:
            raise RequestError(f"{len(request.candidates)} candidates; at most {self.serve.max_candidates} allowed")
        return ranker.rank(request)

    def start_polling(self) -> None:
        """Check the source every `serve.poll_seconds` in a daemon thread (0: never)."""
        if self.serve.poll_seconds <= 0 or self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, name="cscnn-model-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.serve.poll_seconds):
            try:
                self.reload()
            except Exception as exc:  # a registry or load failure must not stop the poller or the service
                log.warning("model reload failed, still serving %s: %s", self._current and self._current.served, exc)
                if self._on_error is not None:
                    self._on_error(exc)

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None
