"""The ranking service's HTTP contract: the strict request models, the response shapes, and the body limit.

Everything a client sends or receives is defined here, with the limits that make a bad request a 4xx naming
the problem: pydantic models that coerce nothing and forbid unknown fields (400), a candidate limit set per
deployment (`request_model`), and a body-size limit checked before anything parses (`BodyLimit`, 413).

Each ranked item carries the fallbacks used for it (see `FLAGS`):

    candidate not in the catalogue   unknown category/brand tokens, the catalogue's mean log-price, the global
                                     mean visual vector; `items` in the request may supply its features
    candidate not in the table       the mean visual vector of its category (global mean for an unknown one)
    id never seen in training        the model's unknown-id embedding row (every brand-new ad)
    unknown user                     the unknown user-id row; age group and gender still come from the request
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import numpy as np
import pandas as pd
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

from cscnn.errors import CSCNNError

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
    """`hour` or `ts`, not both: the keys count, not their values ({"hour": null, "ts": ...} is both), as the
    OpenAPI document says it (`cscnn.serving.openapi`)."""

    device: Token = Field(description="device class of the request, e.g. 'mobile'")
    hour: int | None = Field(None, ge=0, le=23, description="UTC hour of the request")
    ts: AwareDatetime | None = Field(None, description="request time with a time zone (instead of `hour`)")

    @field_validator("ts")
    @classmethod
    def _representable_in_utc(cls, ts: dt.datetime | None) -> dt.datetime | None:
        """A time whose offset moves it before year 1 or after year 9999 in UTC ("0001-01-01T00:00:00+23:59")
        parses, but has no UTC hour: `astimezone` would raise OverflowError (a 500) when it is ranked."""
        if ts is not None:
            try:
                ts.astimezone(dt.UTC)
            except OverflowError:
                raise ValueError("the time falls outside years 1 to 9999 once converted to UTC") from None
        return ts

    @model_validator(mode="after")
    def _one_time(self) -> Context:
        if {"hour", "ts"} <= self.model_fields_set:
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
    candidates: list[Token] = Field(
        min_length=1, description="item ids to rank, each once", json_schema_extra={"uniqueItems": True}
    )
    items: list[ItemFeatures] = Field(default_factory=list, description="optional features of some candidates")

    # The rule errors name positions, never ids: an answer repeats nothing of the request (bento/README.md).
    @field_validator("candidates")
    @classmethod
    def _unique(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            repeats = np.flatnonzero(pd.Index(ids).duplicated()).tolist()
            raise ValueError(f"candidates at positions {repeats[:10]} repeat an earlier id (each candidate once)")
        return ids

    @model_validator(mode="after")
    def _items_are_candidates(self) -> RankRequest:
        if not self.items:
            return self
        ids = pd.Index([item.item_id for item in self.items])
        stray = np.flatnonzero(~ids.isin(self.candidates)).tolist()
        if stray:
            raise ValueError(f"items at positions {stray[:10]} have an item_id that is not among the candidates")
        if ids.has_duplicates:
            repeats = np.flatnonzero(ids.duplicated()).tolist()
            raise ValueError(f"items at positions {repeats[:10]} repeat an earlier item_id (each item once)")
        return self


# The only names a log line may use for a request's fields (`cscnn.serving.security.error_fields`): a key that
# is not one of them is the client's own text.
FIELD_NAMES = frozenset(name for model in (RankRequest, User, Context, ItemFeatures) for name in model.model_fields)


def replaying(body: bytes, more: bool, receive):
    """An ASGI `receive` that first hands the app `body`, already read, then passes on to `receive`."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def request_model(max_candidates: int) -> type[RankRequest]:
    """`RankRequest` with the configured candidate limit, so a too-long list is a validation error like any
    other (400, naming the field)."""
    return create_model(
        "RankRequest",
        __base__=RankRequest,
        candidates=(
            list[Token],
            Field(
                min_length=1,
                max_length=max_candidates,
                description="item ids to rank, each once",
                json_schema_extra={"uniqueItems": True},
            ),
        ),
        items=(
            list[ItemFeatures],
            Field(
                default_factory=list,
                max_length=max_candidates,
                description="optional features of some candidates: each item_id once, and among the candidates",
            ),
        ),
    )


Flag = Literal["not_in_catalogue", "visual_fallback", "unseen_item_id", "request_features"]
FLAGS: tuple[Flag, ...] = ("not_in_catalogue", "visual_fallback", "unseen_item_id", "request_features")
NOT_IN_CATALOGUE, VISUAL_FALLBACK, UNSEEN_ITEM_ID, REQUEST_FEATURES = (1 << i for i in range(len(FLAGS)))
FLAG_SETS = tuple(tuple(f for i, f in enumerate(FLAGS) if code >> i & 1) for code in range(1 << len(FLAGS)))


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


class ErrorBody(BaseModel):
    """The body of every error answer. A 400 for a malformed request adds pydantic's `detail` list: one entry
    per problem, with its `loc` (the field's path) and `msg`; the request's values are never echoed (the `loc`
    of an unknown field is the client's own key)."""

    error: str
    detail: list[dict] | None = Field(None, description="400 only: [{type, loc, msg, ...}, ...]")


class ReloadResult(BaseModel):
    swapped: bool = Field(description="true when another version was loaded and now serves")
    model: ServedModel | None = Field(description="the version serving after the reload; null: none yet")
    seconds: float


# --- oversized bodies -----------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before anything parses it.

    Checks the declared Content-Length and, for chunked bodies, counts bytes as they arrive. It lives with the
    request models, not with the hot swap: it is the first check of the request contract (the size that
    `max_body_bytes` sets), and it knows nothing of models or versions.
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
        await self.app(scope, replaying(b"".join(chunks), False, receive), send)

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
