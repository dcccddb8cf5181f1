"""The ranking service's library half: request/response shapes, the vectorised `Ranker`, and hot swap.

`bento/service.py` is a thin BentoML wrapper over this module; everything here runs and is tested without a
server. A request runs only the CTR network (`CTRModel.score`): visual vectors come from the embedding table
built by the same model version, item features from the catalogue, both looked up for all candidates at once
(`pd.Index.get_indexer` and array gathers, no Python loop over candidates).

The serving unit is an immutable `Ranker`: one model, its table and the catalogue, loaded together. A new
champion is loaded next to the serving one and replaces it in one reference assignment (`ModelHolder`), so a
request sees either the old bundle or the new one, never a mix, and nothing waits for the load.

Fallbacks, each flagged on the item it touched (see `FLAGS`):

    candidate not in the catalogue   unknown category/brand tokens, the catalogue's mean log-price, the global
                                     mean visual vector; `items` in the request may supply its features
    candidate not in the table       the mean visual vector of its category (global mean for an unknown one)
    id never seen in training        the model's unknown-id embedding row (every brand-new ad)
    unknown user                     the unknown user-id row; age group and gender still come from the request
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

from cscnn.config import ServeConfig, load_config
from cscnn.data import schema
from cscnn.data.images import load_images
from cscnn.errors import CSCNNError, ModelMismatchError
from cscnn.models import CTRModel, ImageBank
from cscnn.state import State
from cscnn.training.checkpoint import CARD_FILE, load_checkpoint
from cscnn.training.embed import CATALOG_COLUMNS, CATALOG_FILE, EmbeddingTable, load_table
from cscnn.training.features import FeatureEncoder

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # the contract's value for a feature that is not known
SERVING_POSITION = "1"  # every candidate is scored at slot 1 (docs/model.md, "Position at ranking time")
MAX_TOKEN_LENGTH = 128
BODY_BYTES_PER_CANDIDATE = 512  # an id plus optional features, generously


def max_body_bytes(max_candidates: int) -> int:
    """The largest request body the service reads (413 beyond): enough for `max_candidates` with features."""
    return 16_384 + BODY_BYTES_PER_CANDIDATE * max_candidates


# --- request and response ----------------------------------------------------------------------------------

Token = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class _Strict(BaseModel):
    """No coercion ("3" is not an hour), no unknown fields (a typo is an error), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class User(_Strict):
    id: Token = Field(description="user id; an id the model never saw scores with the unknown-user row")
    age_group: Token | None = Field(None, description="e.g. '25-34'; omitted: 'unknown'")
    gender: Token | None = Field(None, description="'f', 'm' or 'unknown'; omitted: 'unknown'")


class Context(_Strict):
    device: Token = Field(description="device class of the request, e.g. 'mobile'")
    hour: int | None = Field(None, ge=0, le=23, description="UTC hour of the request")
    ts: AwareDatetime | None = Field(None, description="request time with a time zone (instead of `hour`)")

    @model_validator(mode="after")
    def _one_time(self) -> Context:
        if self.hour is not None and self.ts is not None:
            raise ValueError("give either 'hour' or 'ts', not both")
        return self

    def utc_hour(self) -> int:
        """The hour feature as training derives it (UTC); the server's clock when the request gives none."""
        if self.hour is not None:
            return self.hour
        moment = self.ts or dt.datetime.now(dt.UTC)
        return moment.astimezone(dt.UTC).hour


class ItemFeatures(_Strict):
    """Features of a candidate, for an ad newer than the service's catalogue; they replace the catalogue's."""

    item_id: Token
    category: Token
    brand: Token | None = Field(None, description="omitted: 'unknown'")
    price: float | None = Field(None, ge=0, description="omitted: the catalogue's mean log-price")


class RankRequest(_Strict):
    user: User
    context: Context
    candidates: list[Token] = Field(min_length=1, description="item ids to rank, each once")
    items: list[ItemFeatures] = Field(default_factory=list, description="optional features of some candidates")

    @field_validator("candidates")
    @classmethod
    def _unique(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            seen = pd.Index(ids)
            duplicated = sorted(set(seen[seen.duplicated()]))
            raise ValueError(f"duplicate candidate ids {duplicated[:10]} (each candidate must appear once)")
        return ids

    @model_validator(mode="after")
    def _items_are_candidates(self) -> RankRequest:
        if not self.items:
            return self
        ids = [item.item_id for item in self.items]
        stray = sorted(set(ids) - set(self.candidates))
        if stray:
            raise ValueError(f"items {stray[:10]} are not among the candidates")
        if len(set(ids)) != len(ids):
            raise ValueError("an item id appears twice in 'items'")
        return self


def request_model(max_candidates: int) -> type[RankRequest]:
    """`RankRequest` with the configured candidate limit, so a too-long list is a validation error like any
    other (400, naming the field)."""
    return create_model(
        "RankRequest",
        __base__=RankRequest,
        candidates=(list[Token], Field(min_length=1, max_length=max_candidates, description="item ids to rank")),
    )


Flag = Literal["not_in_catalogue", "visual_fallback", "unseen_item_id", "request_features"]
FLAGS: tuple[Flag, ...] = ("not_in_catalogue", "visual_fallback", "unseen_item_id", "request_features")
NOT_IN_CATALOGUE, VISUAL_FALLBACK, UNSEEN_ITEM_ID, REQUEST_FEATURES = (1 << i for i in range(len(FLAGS)))
_FLAG_SETS = tuple(tuple(f for i, f in enumerate(FLAGS) if code >> i & 1) for code in range(1 << len(FLAGS)))


class ServedModel(BaseModel):
    """Which model scored a request: the registry version, its weight fingerprint and its table."""

    name: str
    version: str
    fingerprint: str
    embeddings: str | None = None


class ScoredItem(TypedDict):
    """A plain dict, not a model: validating 1,000 dicts costs ~0.2 ms, building 1,000 models ~2 ms."""

    item_id: str
    score: Annotated[float, Field(description="predicted click probability at position 1")]
    flags: Annotated[tuple[Flag, ...], Field(description="fallbacks used for this item; empty when none")]


class RankResponse(BaseModel):
    model: ServedModel
    user_known: bool = Field(description="false: the user id is new to the model (unknown-user row)")
    items: list[ScoredItem] = Field(description="the candidates, best first")


class RequestError(CSCNNError):
    """A request the service cannot serve as asked (answered with a 4xx)."""


# --- the ranker ---------------------------------------------------------------------------------------------

CATALOG = schema.TableSpec(
    name="catalog",
    description="The item features the service scores with (a subset of the items table).",
    key=("item_id",),
    columns=tuple(c for c in schema.ITEMS.columns if c.name in CATALOG_COLUMNS),
)
_COLUMN = {name: i for i, name in enumerate(schema.SPARSE_FEATURES)}
_SCALAR = ("user_id", "age_group", "gender", "device", "hour", "position")  # one value per request


@dataclass
class Features:
    """A request as model inputs, built as the offline `encode` builds them, plus per-candidate flag bits."""

    sparse: np.ndarray  # [B, n_sparse] int64 token indices, 0 = unknown
    dense: np.ndarray  # [B, n_dense] float32
    visual: np.ndarray | None  # [B, visual_dim] float32; None for a model without images
    flags: np.ndarray  # [B] int bits of FLAGS
    rows: np.ndarray  # [B] catalogue row, len(catalogue) for an item not in it


class Ranker:
    """One model version ready to rank: CTR network, embedding table and catalogue, immutable once built.

    Everything the CTR network needs from the item side (token indices, log-price, visual vector) is gathered
    once per catalogue item at load time, into arrays with one extra last row that holds the defaults for an
    item not in the catalogue; a request indexes those arrays with its candidates' catalogue rows.
    """

    def __init__(
        self,
        model: CTRModel,
        encoder: FeatureEncoder,
        catalog: pd.DataFrame,
        table: EmbeddingTable | None,
        served: ServedModel,
        images: ImageBank | None = None,
    ) -> None:
        if model.uses_images and table is None:
            raise CSCNNError(f"model {served.fingerprint} uses images: it needs its embedding table")
        self.model = model.eval()
        self.served = served
        self.table = table
        self.images = images  # only to put the CNN back in the request path, for the benchmark
        self._item_vocab = pd.Index(encoder.vocabs["item_id"])
        self._tokens = {name: {token: i + 1 for i, token in enumerate(encoder.vocabs[name])} for name in _SCALAR}
        self._category_vocab = pd.Index(encoder.vocabs["category"])
        self._brand_vocab = pd.Index(encoder.vocabs["brand"])
        self._catalog_ids = pd.Index(catalog["item_id"].to_numpy(dtype=object))
        log_price = np.log1p(catalog["price"].to_numpy(dtype=np.float64))
        self.mean_log_price = float(log_price.mean()) if len(log_price) else 0.0
        self._item_code = np.append(_codes(self._item_vocab, catalog["item_id"]), 0)
        self._category = np.append(_codes(self._category_vocab, catalog["category"]), 0)
        self._brand = np.append(_codes(self._brand_vocab, catalog["brand"]), 0)
        self._log_price = np.append(log_price, self.mean_log_price).astype(np.float32)
        self._visual: np.ndarray | None = None
        self._in_table = np.zeros(len(catalog) + 1, dtype=bool)
        if table is not None:
            vectors, found = table.lookup(catalog["item_id"].to_numpy(), catalog["category"].to_numpy())
            self._visual = np.vstack([vectors, table.category_vectors[:1]]).astype(np.float32)
            self._in_table[:-1] = found

    def _token(self, feature: str, value: str | None) -> int:
        return self._tokens[feature].get(UNKNOWN if value is None else value, 0)

    def features(self, request: RankRequest) -> Features:
        ids = np.asarray(request.candidates, dtype=object)
        rows = self._catalog_ids.get_indexer(ids)
        missing = rows < 0
        rows[missing] = len(self._catalog_ids)
        user, context = request.user, request.context
        sparse = np.empty((len(ids), len(schema.SPARSE_FEATURES)), dtype=np.int64)
        sparse[:, _COLUMN["user_id"]] = self._token("user_id", user.id)
        sparse[:, _COLUMN["age_group"]] = self._token("age_group", user.age_group)
        sparse[:, _COLUMN["gender"]] = self._token("gender", user.gender)
        sparse[:, _COLUMN["device"]] = self._token("device", context.device)
        sparse[:, _COLUMN["hour"]] = self._token("hour", str(context.utc_hour()))
        sparse[:, _COLUMN["position"]] = self._token("position", SERVING_POSITION)
        sparse[:, _COLUMN["item_id"]] = self._item_code[rows]
        if missing.any():
            sparse[missing, _COLUMN["item_id"]] = _codes(self._item_vocab, ids[missing])
        sparse[:, _COLUMN["category"]] = self._category[rows]
        sparse[:, _COLUMN["brand"]] = self._brand[rows]
        dense = self._log_price[rows][:, None]
        visual = None if self._visual is None else self._visual[rows]
        in_table = self._in_table[rows]
        flags = np.where(missing, NOT_IN_CATALOGUE, 0) | np.where(sparse[:, _COLUMN["item_id"]] == 0, UNSEEN_ITEM_ID, 0)
        if request.items:
            at = pd.Index(ids).get_indexer([item.item_id for item in request.items])
            categories = np.asarray([item.category for item in request.items], dtype=object)
            brands = [item.brand or UNKNOWN for item in request.items]
            prices = np.asarray([np.nan if item.price is None else item.price for item in request.items])
            sparse[at, _COLUMN["category"]] = _codes(self._category_vocab, categories)
            sparse[at, _COLUMN["brand"]] = _codes(self._brand_vocab, brands)
            dense[at, 0] = np.where(np.isnan(prices), self.mean_log_price, np.log1p(prices))
            if visual is not None and self.table is not None:
                visual[at], in_table[at] = self.table.lookup(ids[at], categories)
            flags[at] = (flags[at] & ~NOT_IN_CATALOGUE) | REQUEST_FEATURES
        if visual is not None:
            flags |= np.where(in_table, 0, VISUAL_FALLBACK)
        return Features(sparse, dense, visual, flags, rows)

    @torch.inference_mode()
    def scores(self, features: Features) -> np.ndarray:
        """Click probabilities: the CTR network alone (and the CNN, only when built with `images`)."""
        visual = None if features.visual is None else torch.from_numpy(features.visual)
        if self.images is not None and visual is not None:
            rows = torch.from_numpy(features.rows)
            present = rows < len(self._catalog_ids)
            images, categories = self.images.images[rows[present]], self.images.categories[rows[present]]
            visual[present] = self.model.encode_images(images, categories)["visual"]
        logits = self.model.score(torch.from_numpy(features.sparse), torch.from_numpy(features.dense), visual)
        return torch.sigmoid(logits).numpy()

    def rank(self, request: RankRequest) -> RankResponse:
        features = self.features(request)
        scores = self.scores(features)
        order = np.argsort(-scores, kind="stable")
        ids = np.asarray(request.candidates, dtype=object)[order].tolist()
        items = [
            {"item_id": item_id, "score": score, "flags": _FLAG_SETS[code]}
            for item_id, score, code in zip(ids, scores[order].tolist(), features.flags[order].tolist(), strict=True)
        ]
        user_known = bool(features.sparse[0, _COLUMN["user_id"]] != 0)
        return RankResponse.model_validate({"model": self.served, "user_known": user_known, "items": items})


def _codes(vocab: pd.Index, values) -> np.ndarray:
    """Tokens -> 1-based vocabulary indices, unknown -> 0 (as `FeatureEncoder.encode_sparse`), vectorised."""
    return vocab.get_indexer(pd.Index(np.asarray(values, dtype=object))).astype(np.int64) + 1


def read_catalog(path: Path) -> pd.DataFrame:
    """The catalogue checked against the contract's item columns; an `image` column is kept when present
    (only the benchmark's CNN-in-the-path variant reads it)."""
    path = Path(path)
    if not path.is_file():
        raise CSCNNError(
            f"{path}: no catalogue next to the embedding table (the service needs item_id, category, brand, price)"
        )
    frame = pd.read_parquet(path)
    catalog = CATALOG.validate(frame, source=str(path))
    if "image" in frame:
        catalog["image"] = frame["image"].to_numpy()
    return catalog


def load_ranker(
    checkpoint_dir: Path,
    table_dir: Path,
    served: ServedModel | None = None,
    catalog_file: Path | None = None,
    images_dir: Path | None = None,
) -> Ranker:
    """Load one model version with the table it built (any other is refused) and the catalogue.

    `catalog_file` defaults to `catalog.parquet` in the table folder. `images_dir` (with an `image` column in
    the catalogue) puts the CNN back in the request path; only the serving benchmark does that.
    """
    model, encoder, cfg, card = load_checkpoint(checkpoint_dir)
    served = served or ServedModel(name="local", version=card["fingerprint"], fingerprint=card["fingerprint"])
    if served.fingerprint and served.fingerprint != card["fingerprint"]:
        raise ModelMismatchError(
            f"{checkpoint_dir}: checkpoint {card['fingerprint']} is not model version {served.version} "
            f"({served.fingerprint})"
        )
    table = load_table(table_dir, expected_fingerprint=card["fingerprint"]) if model.uses_images else None
    catalog = read_catalog(catalog_file or Path(table_dir) / CATALOG_FILE)
    images = None
    if images_dir is not None and model.uses_images:
        pixels = load_images(catalog, Path(images_dir), cfg.model.image_size)
        images = ImageBank(torch.from_numpy(pixels), torch.from_numpy(encoder.category_index(catalog["category"])))
    return Ranker(model, encoder, catalog, table, served, images)


# --- where versions come from --------------------------------------------------------------------------------


class ModelSource(Protocol):
    """Names the version that should serve now (cheap, polled) and loads a version (slow, on change)."""

    def resolve(self) -> ServedModel | None: ...

    def load(self, target: ServedModel) -> Ranker: ...


@dataclass
class RegistrySource:
    """The MLflow registry: the version an alias names (default `champion`), or one pinned version."""

    alias: str = "champion"
    version: str | None = None
    name: str | None = None
    state: State | None = None

    def resolve(self) -> ServedModel | None:
        from cscnn.tools import registry

        ref = registry.get_version(self.version, self.state, self.name) if self.version else None
        ref = ref or registry.resolve(self.alias, self.state, self.name)
        if ref is None:
            return None
        return ServedModel(name=ref.name, version=ref.version, fingerprint=ref.fingerprint, embeddings=ref.embeddings)

    def load(self, target: ServedModel) -> Ranker:
        from cscnn.tools import registry

        ref = registry.get_version(target.version, self.state, target.name)
        if ref.embeddings != target.embeddings:
            raise CSCNNError(f"version {target.version} changed its table while loading; retrying on the next poll")
        checkpoint_dir, table_dir = registry.fetch(ref, self.state)
        return load_ranker(checkpoint_dir, table_dir, target)


@dataclass
class LocalSource:
    """Folders on disk (a checkpoint and its table): `make serve` without a registry, tests, the benchmark.

    The version is the checkpoint's fingerprint, so replacing the folders (atomically) is picked up by a poll.
    """

    checkpoint_dir: Path
    table_dir: Path
    catalog: Path | None = None
    images_dir: Path | None = None

    def resolve(self) -> ServedModel | None:
        import json

        card_file = Path(self.checkpoint_dir) / CARD_FILE
        if not card_file.is_file():
            return None
        fingerprint = json.loads(card_file.read_text())["fingerprint"]
        return ServedModel(name="local", version=fingerprint, fingerprint=fingerprint, embeddings=str(self.table_dir))

    def load(self, target: ServedModel) -> Ranker:
        return load_ranker(self.checkpoint_dir, self.table_dir, target, self.catalog, self.images_dir)


def serve_config_from_env(environ: Mapping[str, str] | None = None) -> ServeConfig:
    """The `serve` settings: profile `CSCNN_PROFILE` (default small), file `CSCNN_CONFIG`, and `CSCNN_SET`
    (space-separated `section.key=value` overrides, as `--set` on the command line)."""
    env = os.environ if environ is None else environ
    config_file = env.get("CSCNN_CONFIG")
    cfg = load_config(
        env.get("CSCNN_PROFILE", "small"),
        Path(config_file) if config_file else None,
        shlex.split(env.get("CSCNN_SET", "")),
    )
    return cfg.serve


def source_from_env(serve: ServeConfig, environ: Mapping[str, str] | None = None) -> ModelSource:
    """Local folders when `CSCNN_MODEL_DIR` is set (with `CSCNN_TABLE_DIR`, optional `CSCNN_CATALOG` and
    `CSCNN_IMAGES_DIR`); otherwise the registry of `CSCNN_STATE` / `MLFLOW_TRACKING_URI`: the version
    `CSCNN_MODEL_VERSION` when set (the pipeline's smoke check), else the alias `CSCNN_MODEL_ALIAS` (champion)."""
    env = os.environ if environ is None else environ
    if env.get("CSCNN_MODEL_DIR"):
        if not env.get("CSCNN_TABLE_DIR"):
            raise CSCNNError("CSCNN_MODEL_DIR is set but CSCNN_TABLE_DIR is not: the model needs its embedding table")
        catalog, images = env.get("CSCNN_CATALOG"), env.get("CSCNN_IMAGES_DIR")
        return LocalSource(
            Path(env["CSCNN_MODEL_DIR"]),
            Path(env["CSCNN_TABLE_DIR"]),
            Path(catalog) if catalog else None,
            Path(images) if images else None,
        )
    return RegistrySource(
        alias=env.get("CSCNN_MODEL_ALIAS", "champion"),
        version=env.get("CSCNN_MODEL_VERSION") or None,
        name=serve.model_name,
        state=State.from_env(env.get("CSCNN_STATE")),
    )


# --- hot swap -------------------------------------------------------------------------------------------------


class ReloadResult(BaseModel):
    swapped: bool = Field(description="true when another version was loaded and now serves")
    model: ServedModel | None = Field(description="the version serving after the reload; null: none yet")
    seconds: float


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


# --- oversized bodies -----------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before anything parses it.

    Checks the declared Content-Length and, for chunked bodies, counts bytes as they arrive.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, int(declared))
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._reject(send, size)
                return
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send, size: int) -> None:
        import json

        payload = json.dumps(
            {"error": f"request body of {size} bytes is over the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
