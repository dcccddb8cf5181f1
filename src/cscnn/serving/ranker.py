"""The ranking service's core: the vectorised `Ranker`, and loading one model version into it.

`bento/service.py` is a thin BentoML wrapper over the `cscnn.serving` modules; everything here runs and is
tested without a server. A request runs only the CTR network (`CTRModel.score`): visual vectors come from the
embedding table built by the same model version, item features from the catalogue, both looked up for all
candidates at once (one dict lookup per candidate for its catalogue row, then array gathers).

The serving unit is an immutable `Ranker`: one model, its table and the catalogue, loaded together
(`load_ranker`); `cscnn.serving.hotswap` replaces one with the next. The fallbacks for what the model does not
know are listed, and flagged per item, in `cscnn.serving.schemas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cscnn.data import schema
from cscnn.data.images import load_images
from cscnn.errors import CSCNNError, ModelMismatchError
from cscnn.models import CTRModel, ImageBank
from cscnn.serving.schemas import (
    FLAG_SETS,
    NOT_IN_CATALOGUE,
    REQUEST_FEATURES,
    SERVING_POSITION,
    UNKNOWN,
    UNSEEN_ITEM_ID,
    VISUAL_FALLBACK,
    RankRequest,
    RankResponse,
    ServedModel,
)
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.embed import CATALOG_COLUMNS, CATALOG_FILE, EmbeddingTable, load_table
from cscnn.training.features import FeatureEncoder

CATALOG = schema.TableSpec(
    name="catalog",
    description="The item features the service scores with (a subset of the items table).",
    key=("item_id",),
    columns=tuple(c for c in schema.ITEMS.columns if c.name in CATALOG_COLUMNS),
)
_COLUMN = {name: i for i, name in enumerate(schema.SPARSE_FEATURES)}
_SCALAR = ("user_id", "age_group", "gender", "device", "hour", "position")  # one value per request
_PER_REQUEST_FLAGS = NOT_IN_CATALOGUE | REQUEST_FEATURES  # an item whose inputs are not its catalogue row's


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
        # A dict, not a pd.Index: get_indexer on 200 request ids first builds an Index of them (pandas infers a
        # string dtype), ~0.1 ms against ~0.01 ms for the lookups.
        self._catalog_rows = {item_id: row for row, item_id in enumerate(catalog["item_id"].tolist())}
        self._n_catalog = len(catalog)
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
        self._first_layer: FirstLayerShares | None = None
        if images is None and len(self.model.deep) and isinstance(self.model.deep[0], torch.nn.Linear):
            self._first_layer = FirstLayerShares(
                self.model, self._item_code, self._category, self._brand, self._log_price, self._visual
            )

    def _token(self, feature: str, value: str | None) -> int:
        return self._tokens[feature].get(UNKNOWN if value is None else value, 0)

    def features(self, request: RankRequest) -> Features:
        ids = np.asarray(request.candidates, dtype=object)
        n = self._n_catalog  # the defaults' row
        rows = np.fromiter(map(self._catalog_rows.get, request.candidates, repeat(n)), np.intp, len(ids))
        missing = rows == n
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
            present = rows < self._n_catalog
            images, categories = self.images.images[rows[present]], self.images.categories[rows[present]]
            visual[present] = self.model.encode_images(images, categories)["visual"]
        sparse, dense = torch.from_numpy(features.sparse), torch.from_numpy(features.dense)
        if self._first_layer is None:
            return torch.sigmoid(self.model.score(sparse, dense, visual)).numpy()
        x0 = self.model.ctr_input(sparse, dense, visual)
        hidden = self._first_layer(x0, features)
        return torch.sigmoid(self.model.head(x0, self.model.deep[1:](hidden))).numpy()

    def rank(self, request: RankRequest) -> RankResponse:
        features = self.features(request)
        scores = self.scores(features)
        order = np.argsort(-scores, kind="stable")
        ids = np.asarray(request.candidates, dtype=object)[order].tolist()
        items = [
            {"item_id": item_id, "score": score, "flags": FLAG_SETS[code]}
            for item_id, score, code in zip(ids, scores[order].tolist(), features.flags[order].tolist(), strict=True)
        ]
        user_known = bool(features.sparse[0, _COLUMN["user_id"]] != 0)
        # Built, not validated: every field is made here from typed arrays (validating 1,000 items cost 0.16 ms).
        return RankResponse.model_construct(model=self.served, user_known=user_known, items=items)


class FirstLayerShares:
    """The first deep layer, split by the columns of x0 it reads: the item's (its id, category and brand
    embeddings, log-price, visual vector) and the request's (user, context, position). Every catalogue item's
    share, W_item . x0_item, is computed once at load time; a request computes its own share once, for one row,
    and each candidate adds the two, instead of multiplying all of x0 [B, 177] by W [177, 256] per request
    (0.31 of 0.86 ms at 200 candidates, the `small` model). An item whose inputs are not its catalogue row's
    (not in the catalogue, or described by the request) gets its share computed from its own x0. The sums run
    in another order than one matrix product: the scores agree to float32 rounding
    (tests/integration/test_serving.py)."""

    ITEM_FEATURES = ("item_id", "category", "brand")

    def __init__(self, model: CTRModel, item_code, category, brand, log_price, visual) -> None:
        width = model.embeddings[0].embedding_dim
        item_columns = [c for f in self.ITEM_FEATURES for c in range(_COLUMN[f] * width, (_COLUMN[f] + 1) * width)]
        n_in = model.deep[0].in_features
        item_columns += list(range(len(schema.SPARSE_FEATURES) * width, n_in))  # dense features, visual vector
        self.item = torch.tensor(item_columns)
        self.request = torch.tensor(sorted(set(range(n_in)) - set(item_columns)))
        weight, self.bias = model.deep[0].weight.detach(), model.deep[0].bias.detach()
        self.item_weight = weight[:, self.item].T.contiguous()
        self.request_weight = weight[:, self.request].T.contiguous()
        sparse = np.zeros((len(item_code), len(schema.SPARSE_FEATURES)), dtype=np.int64)
        for feature, codes in zip(self.ITEM_FEATURES, (item_code, category, brand), strict=True):
            sparse[:, _COLUMN[feature]] = codes
        with torch.inference_mode():
            x0 = model.ctr_input(
                torch.from_numpy(sparse),
                torch.from_numpy(log_price[:, None]),
                None if visual is None else torch.from_numpy(visual),
            )
            self.catalogue = x0[:, self.item] @ self.item_weight  # [catalogue + 1, width of the layer]

    def __call__(self, x0: torch.Tensor, features: Features) -> torch.Tensor:
        """The first deep layer's output (before its ReLU) for x0 [B, in] of a request's candidates."""
        shares = self.catalogue[torch.from_numpy(features.rows)]
        own = np.flatnonzero(features.flags & _PER_REQUEST_FLAGS)
        if len(own):
            at = torch.from_numpy(own)
            shares[at] = x0[at][:, self.item] @ self.item_weight
        return shares + (x0[:1, self.request] @ self.request_weight + self.bias)


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
