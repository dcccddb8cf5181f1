"""The visual lookup table: every catalogue item's visual vector, precomputed by one model version.

Online serving runs only the CTR network, never the CNN; it reads vectors from this table. The table is a
folder, laid out for fast CPU lookup (one contiguous float32 matrix, memory-mappable):

    vectors.npy           float32 [n_items, visual_dim], row i = items.parquet row i
    items.parquet         item_id, category (row order of vectors.npy)
    catalog.parquet       item_id, category, brand, price: the item features serving scores with (same rows)
    category_vectors.npy  float32 [n_categories + 1, visual_dim]: row 0 the mean over all items,
                          row k the mean of the model's category k; `lookup` falls back to these for an
                          item that is not in the table
    meta.json             model_fingerprint, variant, categories, sizes, `refreshed` (rows embedded last)

`export_table` embeds the whole catalogue (a new model); `extend_table` embeds only items the table lacks
(the daily refresh of new ads with the champion's CNN).

Every table records the fingerprint of the model that built it; `load_table` refuses a table whose
fingerprint is not the expected model's (`ModelMismatchError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cscnn.data.io import World, open_world
from cscnn.errors import CSCNNError, ModelMismatchError
from cscnn.files import atomic_dir, write_json
from cscnn.models import CTRModel
from cscnn.models.ctr import ImageSource
from cscnn.training import distributed
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.features import image_source
from cscnn.training.prefetch import ahead, depth_for
from cscnn.training.train import select_device

EMBED_BATCH = 512
CATALOG_FILE = "catalog.parquet"
CATALOG_COLUMNS = ("item_id", "category", "brand", "price")  # what serving needs to score an item


@torch.no_grad()
def visual_vectors(
    model: CTRModel,
    bank: ImageSource,
    device: torch.device,
    ranks: distributed.Ranks | None = None,
    rows: np.ndarray | None = None,
    prefetch: int = 0,
) -> np.ndarray:
    """The visual vectors of catalogue `rows` (default: every row), in that order. Under several workers each
    rank embeds its contiguous share and the shares are gathered (every rank gets the whole table).
    `prefetch`: image batches gathered ahead of the CNN by a background thread (`train.prefetch_batches`)."""
    ranks = ranks or distributed.Ranks()
    model.eval()
    wanted = torch.arange(len(bank)) if rows is None else torch.from_numpy(np.asarray(rows, dtype=np.int64))
    mine = wanted[distributed.local_slice(len(wanted), ranks)]
    pin = device.type == "cuda"
    chunks = [np.empty((0, model.backbone.project.out_features), dtype=np.float32)]
    for images, categories in ahead((_fetched(bank, part, pin) for part in mine.split(EMBED_BATCH)), prefetch):
        visual = model.encode_images(images.to(device, non_blocking=True), categories.to(device, non_blocking=True))
        chunks.append(visual["visual"].float().cpu().numpy())
    return distributed.gather({"vectors": np.concatenate(chunks)}, ranks)["vectors"]


def _fetched(bank: ImageSource, rows: torch.Tensor, pin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, categories = bank.fetch(rows)
    return (images.pin_memory(), categories.pin_memory()) if pin else (images, categories)


@dataclass
class EmbeddingTable:
    item_ids: pd.Index
    categories: np.ndarray  # category name per row
    vectors: np.ndarray
    category_names: list[str]
    category_vectors: np.ndarray
    meta: dict

    def lookup(
        self, item_ids: list[str] | np.ndarray, categories: list[str] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for `item_ids` (vectorised) and a mask of which were in the table.

        A miss (an ad newer than the table) gets the mean vector of its category when `categories` names a
        category the model knows, else the mean over all items.
        """
        rows = self.item_ids.get_indexer(pd.Index(np.asarray(item_ids, dtype=object)))
        found = rows >= 0
        fallback_rows = np.zeros(len(rows), dtype=np.int64)
        if categories is not None:
            known = pd.Index(self.category_names).get_indexer(pd.Index(np.asarray(categories, dtype=object)))
            fallback_rows = known + 1  # -1 (unknown category) -> row 0, the global mean
        out = np.where(found[:, None], self.vectors[np.maximum(rows, 0)], self.category_vectors[fallback_rows])
        return out.astype(np.float32), found


def export_table(model_dir: Path, world_dir: Path, out: Path, device: str = "auto") -> dict:
    """Compute every catalogue item's visual vector with the checkpoint's CNN and write the table.

    As one rank of several (launched by torchrun), each rank embeds its share of the catalogue; rank 0
    gathers the shares and writes the one table, the same as one process would.
    """
    model, encoder, cfg, card = _load_visual_model(model_dir)
    world = open_world(world_dir)
    with distributed.process_group(cfg.train, select_device(device)) as ranks:
        torch_device = distributed.device_for(ranks, select_device(device))
        bank = image_source(world, encoder, cfg)
        vectors = visual_vectors(
            model.to(torch_device),
            bank,
            torch_device,
            ranks,
            prefetch=depth_for(cfg.train.prefetch_batches, torch_device),
        )
        meta = {}
        if ranks.is_main:
            meta = _write_table(Path(out), world.items, vectors, encoder, card, world, refreshed=len(vectors))
        distributed.barrier(ranks)
    return meta or json.loads((Path(out) / "meta.json").read_text())


def extend_table(model_dir: Path, table_dir: Path, world_dir: Path, out: Path, device: str = "auto") -> dict:
    """The daily refresh: embed only the catalogue items the table lacks (new ads), with the same model.

    Writes table + new rows to `out` (the old table is not touched). `meta["refreshed"]` counts new rows.
    """
    model, encoder, cfg, card = _load_visual_model(model_dir)
    table = load_table(table_dir, expected_fingerprint=card["fingerprint"])
    world = open_world(world_dir)
    new_rows = np.flatnonzero(~world.items["item_id"].isin(table.item_ids).to_numpy())
    new_items = world.items.iloc[new_rows].reset_index(drop=True)
    old_items = pd.read_parquet(Path(table_dir) / CATALOG_FILE)
    vectors = np.asarray(table.vectors)
    if len(new_items):
        torch_device = select_device(device)
        # The whole catalogue's source, of which only the new rows are embedded: its decoded store is the one
        # the day's training then reuses (`train.decode_once`).
        bank = image_source(world, encoder, cfg)
        new_vectors = visual_vectors(
            model.to(torch_device),
            bank,
            torch_device,
            rows=new_rows,
            prefetch=depth_for(cfg.train.prefetch_batches, torch_device),
        )
        vectors = np.concatenate([vectors, new_vectors])
    items = pd.concat([old_items, new_items[old_items.columns]], ignore_index=True)
    return _write_table(Path(out), items, vectors, encoder, card, world, refreshed=len(new_items))


def _load_visual_model(model_dir: Path):
    model, encoder, cfg, card = load_checkpoint(model_dir)
    if not model.uses_images:
        raise CSCNNError(f"{model_dir}: variant {card['variant']!r} has no visual part; there is nothing to embed")
    if model.visual_input != "image":
        raise CSCNNError(
            f"{model_dir}: variant {card['variant']!r} is a diagnostic that reads the world's true attributes; "
            "it cannot be embedded or served (train an image variant)"
        )
    return model, encoder, cfg, card


def _write_table(
    out: Path, items: pd.DataFrame, vectors: np.ndarray, encoder, card: dict, world: World, refreshed: int
) -> dict:
    cat_index = encoder.category_index(items["category"])
    category_vectors = np.stack(
        [vectors.mean(axis=0)]
        + [
            vectors[cat_index == k].mean(axis=0) if (cat_index == k).any() else vectors.mean(axis=0)
            for k in range(1, len(encoder.categories) + 1)
        ]
    ).astype(np.float32)
    meta = {
        "model_fingerprint": card["fingerprint"],
        "variant": card["variant"],
        "categories": encoder.categories,
        "n_items": len(vectors),
        "refreshed": refreshed,
        "visual_dim": int(vectors.shape[1]),
        "world": str(world.root),
        "unseen_categories": sorted(set(items["category"]) - set(encoder.categories)),
    }
    with atomic_dir(out) as tmp:
        np.save(tmp / "vectors.npy", vectors.astype(np.float32))
        np.save(tmp / "category_vectors.npy", category_vectors)
        items[["item_id", "category"]].to_parquet(tmp / "items.parquet", index=False)
        items[list(CATALOG_COLUMNS)].to_parquet(tmp / CATALOG_FILE, index=False)
        write_json(tmp / "meta.json", meta)
    return meta


def load_table(path: Path, expected_fingerprint: str | None = None) -> EmbeddingTable:
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise CSCNNError(f"{path}: not an embedding table (no meta.json; build one with `cscnn embed`)")
    meta = json.loads((path / "meta.json").read_text())
    if expected_fingerprint is not None and meta["model_fingerprint"] != expected_fingerprint:
        raise ModelMismatchError(
            f"{path}: table was built by model {meta['model_fingerprint']}, not by the expected model "
            f"{expected_fingerprint}; rebuild it with `cscnn embed`"
        )
    items = pd.read_parquet(path / "items.parquet")
    return EmbeddingTable(
        item_ids=pd.Index(items["item_id"].to_numpy(dtype=object)),
        categories=items["category"].to_numpy(dtype=object),
        vectors=np.load(path / "vectors.npy", mmap_mode="r", allow_pickle=False),
        category_names=meta["categories"],
        category_vectors=np.load(path / "category_vectors.npy", allow_pickle=False),
        meta=meta,
    )
