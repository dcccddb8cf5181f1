"""From contract tables to model inputs: joins, vocabularies, encoded arrays and the image bank.

Vocabularies are fitted on the training days only; a value never seen in training encodes to 0, the
shared "unknown" row of each embedding. Category indices are 1-based for the same reason: 0 is an unseen
category, for which CSCNN falls back to the mean category prior.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cscnn.config import Config
from cscnn.data import image_store, schema
from cscnn.data.image_store import open_store
from cscnn.data.images import load_image, load_images
from cscnn.data.io import World
from cscnn.data.truth import read_attributes
from cscnn.errors import DataContractError, ImageError
from cscnn.models import Batch, ImageBank
from cscnn.variants import get_variant

POSITION_CAP = 50  # positions beyond this share one token


def feature_frame(world: World, impressions: pd.DataFrame) -> pd.DataFrame:
    """Impressions joined with item and user features, plus derived `hour`, `log_price` and `item_row`."""
    items = world.items.assign(item_row=np.arange(len(world.items)))
    frame = impressions.merge(items, on="item_id", how="left", validate="many_to_one")
    frame = frame.merge(world.users, on="user_id", how="left", validate="many_to_one")
    frame["hour"] = frame["ts"].dt.hour.astype(str)
    frame["position"] = frame["position"].clip(upper=POSITION_CAP).astype(str)
    frame["log_price"] = np.log1p(frame["price"].to_numpy(dtype=np.float64))
    return frame


@dataclass
class FeatureEncoder:
    """Token vocabularies per sparse feature, and the category vocabulary the CNN conditions on. `attributes`:
    the true visual attributes the diagnostic `attributes` variant reads (empty for every other model)."""

    vocabs: dict[str, list[str]]
    categories: list[str]
    attributes: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def fit(cls, train_frame: pd.DataFrame) -> FeatureEncoder:
        """Vocabularies of the training impressions only: a category that first shows up later is unseen
        (index 0, mean prior), never a row of untrained noise."""
        return cls.fit_stream([train_frame])

    @classmethod
    def fit_stream(cls, frames: Iterable[pd.DataFrame]) -> FeatureEncoder:
        """The same vocabularies from feature frames read one after the other (memory: the vocabularies)."""
        seen: dict[str, set[str]] = {name: set() for name in schema.SPARSE_FEATURES}
        for frame in frames:
            for name in schema.SPARSE_FEATURES:
                seen[name].update(frame[name].astype(str).unique())
        vocabs = {name: sorted(values) for name, values in seen.items()}
        return cls(vocabs=vocabs, categories=vocabs["category"])

    @property
    def vocab_sizes(self) -> list[int]:
        return [len(self.vocabs[name]) for name in schema.SPARSE_FEATURES]

    @staticmethod
    def _lookup(vocab: list[str], values: pd.Series | np.ndarray) -> np.ndarray:
        """Vectorised token -> 1-based index; unknown tokens -> 0."""
        return pd.Index(vocab).get_indexer(pd.Index(np.asarray(values, dtype=object))).astype(np.int64) + 1

    def encode_sparse(self, frame: pd.DataFrame) -> np.ndarray:
        return np.stack(
            [self._lookup(self.vocabs[name], frame[name].astype(str)) for name in schema.SPARSE_FEATURES],
            axis=1,
        )

    def category_index(self, categories: pd.Series | np.ndarray) -> np.ndarray:
        return self._lookup(self.categories, categories)

    def to_dict(self) -> dict:
        return {"vocabs": self.vocabs, "categories": self.categories, "attributes": self.attributes}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureEncoder:
        return cls(vocabs=data["vocabs"], categories=data["categories"], attributes=data.get("attributes", []))


@dataclass
class EncodedSplit:
    """One split (train/val/test) as arrays; `category` and `cold` are kept for per-slice metrics."""

    sparse: np.ndarray
    dense: np.ndarray
    item_row: np.ndarray
    label: np.ndarray
    category: np.ndarray  # category name per impression
    cold: np.ndarray  # item id not seen in training

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def concat(cls, parts: list[EncodedSplit]) -> EncodedSplit:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    def take(self, index: np.ndarray | slice) -> EncodedSplit:
        return EncodedSplit(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def chunks(self, size: int) -> Iterator[EncodedSplit]:
        """Consecutive pieces of at most `size` rows, in order."""
        for start in range(0, len(self), size):
            yield self.take(slice(start, start + size))

    def to_batch(self) -> Batch:
        return self.batch(np.arange(len(self)))

    def batch(self, index: np.ndarray) -> Batch:
        return Batch(
            sparse=torch.from_numpy(self.sparse[index]),
            dense=torch.from_numpy(self.dense[index]),
            item_row=torch.from_numpy(self.item_row[index]),
            label=torch.from_numpy(self.label[index]),
        )

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[Batch]:
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start : start + batch_size])


def encode(frame: pd.DataFrame, encoder: FeatureEncoder) -> EncodedSplit:
    sparse = encoder.encode_sparse(frame)
    item_column = schema.SPARSE_FEATURES.index("item_id")
    return EncodedSplit(
        sparse=sparse,
        dense=frame[list(schema.DENSE_FEATURES)].to_numpy(dtype=np.float32),
        item_row=frame["item_row"].to_numpy(dtype=np.int64),
        label=frame[schema.LABEL].to_numpy(dtype=np.float32),
        category=frame["category"].to_numpy(dtype=object),
        cold=sparse[:, item_column] == 0,
    )


class CachedImages:
    """The catalogue's images decoded on demand, at most `capacity` of them kept (least recently used out).

    What the training loop and the embedding table use instead of decoding the whole catalogue up front:
    memory is the cache (plus one int per catalogue row), whatever the catalogue's size. `fetch(rows)`
    returns the images and 1-based categories of catalogue rows, like `ImageBank`; hits are one vectorised
    gather, misses are decoded; a bad file raises ImageError naming it and its row.
    """

    def __init__(self, world: World, encoder: FeatureEncoder, image_size: int, capacity: int) -> None:
        self.files = [Path(world.images_dir) / name for name in world.items["image"]]
        self.item_ids = world.items["item_id"].to_numpy()
        self.categories = torch.from_numpy(encoder.category_index(world.items["category"]))
        self.size, self.capacity = image_size, max(1, min(capacity, len(self.files)))
        # All `capacity` slots reserved at once but not touched: the OS commits a page when a decoded image is first
        # written into it, so resident memory grows with the slots filled. (Growing the array by concatenation
        # copied the whole cache on every miss: 25 s of one 64-day epoch.)
        self._pixels = np.empty((self.capacity, 3, image_size, image_size), dtype=np.uint8)
        self._slot = np.full(len(self.files), -1, dtype=np.int64)  # catalogue row -> slot, -1: not cached
        self._row = np.full(self.capacity, -1, dtype=np.int64)  # slot -> catalogue row
        self._used = np.zeros(self.capacity, dtype=np.int64)  # slot -> last fetch that used it
        self._filled = 0  # slots [0, _filled) hold images
        self._clock = 0
        self.decoded = 0  # images decoded so far (misses)

    def __len__(self) -> int:
        return len(self.files)

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wanted = rows.cpu().numpy()
        if len(np.unique(wanted)) > self.capacity:  # more than the cache holds: decode them, keep none
            images = torch.from_numpy(np.stack([self._decode(int(row)) for row in wanted]))
            return images.to(rows.device), self.categories[rows.cpu()].to(rows.device)
        slots = self._slot[wanted]
        if (slots < 0).any():
            self._load(np.unique(wanted[slots < 0]), keep=np.unique(slots[slots >= 0]))
            slots = self._slot[wanted]
        self._clock += 1
        self._used[slots] = self._clock
        images = torch.from_numpy(self._pixels[slots])
        return images.to(rows.device), self.categories[rows.cpu()].to(rows.device)

    def _load(self, rows: np.ndarray, keep: np.ndarray) -> None:
        """Decode `rows` into free slots, else into the least recently used ones not in `keep` (this fetch's)."""
        grow = min(self.capacity - self._filled, len(rows))
        slots = np.arange(self._filled, self._filled + grow)
        self._filled += grow
        if len(rows) > grow:  # the cache is full: evict
            ticks = self._used.copy()
            ticks[keep] = ticks[slots] = np.iinfo(np.int64).max  # never evict what this fetch needs or just got
            victims = np.argpartition(ticks, len(rows) - grow - 1)[: len(rows) - grow]
            self._slot[self._row[victims]] = -1
            slots = np.concatenate([slots, victims])
        for row, slot in zip(rows, slots, strict=True):
            self._pixels[slot] = self._decode(int(row))
            self._slot[row], self._row[slot] = slot, row

    def _decode(self, row: int) -> np.ndarray:
        self.decoded += 1
        try:
            return load_image(self.files[row], self.size)
        except ImageError as exc:
            raise ImageError(f"{exc} (item {self.item_ids[row]!r}, items.parquet row {row})") from exc


class StoredImages:
    """The catalogue's images from its decoded store (`cscnn.data.image_store`): every fetch is one gather
    from a memory map, never a decode, so every epoch, rank and the embedding refresh share one decoding.
    Fetches like `CachedImages` and `ImageBank`: images and 1-based categories of catalogue rows."""

    def __init__(self, world: World, encoder: FeatureEncoder, image_size: int, store_dir: Path, keep: int) -> None:
        self.pixels = open_store(world.items, world.images_dir, image_size, store_dir, keep)
        self.categories = torch.from_numpy(encoder.category_index(world.items["category"]))

    def __len__(self) -> int:
        return len(self.pixels)

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cpu = rows.cpu()
        # np.take copies whole rows out of the map, without the GIL; torch's index_select over the same map was
        # 4-6x slower for these uint8 rows (1,400 of 4,000 64 px images: 4 ms against 24 ms on 2 cores).
        images = torch.from_numpy(np.take(self.pixels, cpu.numpy(), axis=0))
        return images.to(rows.device), self.categories[cpu].to(rows.device)


def image_source(world: World, encoder: FeatureEncoder, cfg: Config) -> StoredImages | CachedImages:
    """The image source of a model's config at its image size: the decoded store (`train.decode_once`), else
    the bounded cache that decodes on demand."""
    if cfg.train.decode_once:
        store_dir = Path(cfg.train.image_store_dir) if cfg.train.image_store_dir else image_store.default_dir()
        return StoredImages(world, encoder, cfg.model.image_size, store_dir, cfg.train.image_store_keep)
    return CachedImages(world, encoder, cfg.model.image_size, cfg.train.image_cache_items)


class AttributeBank:
    """The diagnostic `attributes` variant's input: each catalogue row's true attributes (standardised) and
    1-based category, fetched by row like `CachedImages` fetches images."""

    def __init__(self, world: World, encoder: FeatureEncoder) -> None:
        truth = read_attributes(world.root, world.items["item_id"])
        if encoder.attributes and list(truth.names) != encoder.attributes:
            raise DataContractError(
                f"{world.root}: true attributes {list(truth.names)} differ from the model's {encoder.attributes}"
            )
        self.names = list(truth.names)
        self.values = torch.from_numpy(truth.values)
        self.categories = torch.from_numpy(encoder.category_index(world.items["category"]))

    def __len__(self) -> int:
        return len(self.values)

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cpu = rows.cpu()
        return self.values[cpu].to(rows.device), self.categories[cpu].to(rows.device)


def visual_source(
    world: World, encoder: FeatureEncoder, cfg: Config
) -> StoredImages | CachedImages | AttributeBank | None:
    """What the visual part of `cfg.model.variant` reads: images, true attributes, or nothing (no_image). For
    the attributes variant it also records the attribute names in `encoder` (the model is built from them)."""
    variant = get_variant(cfg.model.variant)
    if not variant.uses_images:
        return None
    if variant.visual_input == "attributes":
        bank = AttributeBank(world, encoder)
        encoder.attributes = bank.names
        return bank
    return image_source(world, encoder, cfg)


def image_bank(world: World, encoder: FeatureEncoder, image_size: int) -> ImageBank:
    """Decode every catalogue image once (a clear ImageError names any bad file and its row); for small
    catalogues and subsets (plots, the packaged model's example). Training reads `image_source`."""
    images = load_images(world.items, world.images_dir, image_size)
    categories = encoder.category_index(world.items["category"])
    return ImageBank(images=torch.from_numpy(images), categories=torch.from_numpy(categories))


@dataclass
class DaySplit:
    train: list[str]
    val: list[str]
    test: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def split_days(days: list[str], val_days: int, test_days: int, window_days: int = 0) -> DaySplit:
    """Time-ordered split: the last `test_days` are held out, the `val_days` before them validate."""
    needed = val_days + test_days + 1
    if len(days) < needed:
        raise DataContractError(
            f"need at least {needed} days of impressions (train + {val_days} validation + {test_days} test), "
            f"found {len(days)}: {days}"
        )
    test = days[len(days) - test_days :]
    val = days[len(days) - test_days - val_days : len(days) - test_days]
    train = days[: len(days) - test_days - val_days]
    if window_days:
        train = train[-window_days:]
    return DaySplit(train=train, val=val, test=test)
