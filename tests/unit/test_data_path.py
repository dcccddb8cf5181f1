"""The data path that feeds the step (issue 23): images decoded once into a shared store, batches assembled
ahead of the step without changing what the step sees."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch

from cscnn.config import load_config
from cscnn.data.image_store import open_store
from cscnn.data.io import open_world
from cscnn.errors import ImageError
from cscnn.training import distributed
from cscnn.training.checkpoint import build_model
from cscnn.training.features import StoredImages, image_bank, image_source
from cscnn.training.prefetch import GatheredImages, ahead, depth_for
from cscnn.training.recipe import ItemIdDropout
from cscnn.training.train import Run, assembled_batches, make_optimizer, prepare, seed_everything


def test_the_store_serves_what_decoding_everything_serves_and_is_built_once(tiny_with, tiny_world, tmp_path):
    world = open_world(tiny_world)
    cfg = tiny_with(f"train.image_store_dir={tmp_path / 'store'}")
    encoder = prepare(world, tiny_with("train.decode_once=false")).encoder
    eager = image_bank(world, encoder, cfg.model.image_size)
    stored = image_source(world, encoder, cfg)
    assert isinstance(stored, StoredImages)
    rows = torch.tensor([5, 0, 5, len(eager) - 1])
    images, categories = stored.fetch(rows)
    torch.testing.assert_close(images, eager.images[rows])
    torch.testing.assert_close(categories, eager.categories[rows])
    (built,) = (tmp_path / "store").glob("*.npy")
    inode = built.stat().st_ino
    copy = tmp_path / "copied-world"  # content-addressed: another folder with the same images maps the same store
    shutil.copytree(tiny_world, copy)
    StoredImages(open_world(copy), encoder, cfg.model.image_size, tmp_path / "store", keep=4)
    assert [p.stat().st_ino for p in (tmp_path / "store").glob("*.npy")] == [inode]
    first = world.items["image"].iloc[0]
    shutil.copy(copy / "images" / world.items["image"].iloc[1], copy / "images" / first)  # a changed image
    changed = StoredImages(open_world(copy), encoder, cfg.model.image_size, tmp_path / "store", keep=4)
    assert len(list((tmp_path / "store").glob("*.npy"))) == 2
    torch.testing.assert_close(changed.fetch(torch.tensor([0]))[0], eager.images[[1]])


def test_a_bad_image_fails_the_build_naming_its_row_and_leaves_no_store(tiny_world, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_world, broken)
    world = open_world(broken)
    (broken / "images" / world.items["image"].iloc[3]).write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"items\.parquet row 3"):
        open_store(world.items, world.images_dir, 32, tmp_path / "store")
    assert not list((tmp_path / "store").glob("*.npy")) and not list((tmp_path / "store").glob("*.partial"))


def test_only_the_most_recently_used_stores_are_kept(tiny_world, tmp_path):
    world = open_world(tiny_world)
    for size in (8, 12, 16):  # three "catalogue versions" (the size is part of the key)
        open_store(world.items, world.images_dir, size, tmp_path, keep=2)
    kept = sorted(np.load(p, mmap_mode="r").shape[-1] for p in tmp_path.glob("*.npy"))
    assert kept == [12, 16]


def test_ahead_keeps_the_order_forwards_errors_and_stops_when_closed():
    assert list(ahead(iter(range(50)), depth=3)) == list(range(50))
    assert list(ahead(iter(range(5)), depth=0)) == list(range(5))

    def failing():
        yield 1
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        list(ahead(failing(), depth=2))
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield len(produced)

    stream = ahead(endless(), depth=2)
    assert next(stream) == 1
    stream.close()
    assert not any(t.name == "cscnn-batch-assembly" for t in threading.enumerate())
    assert len(produced) <= 5  # bounded: the producer ran at most the queue's depth ahead
    assert depth_for(-1, torch.device("cpu")) == 0 and depth_for(-1, torch.device("cuda")) > 0
    assert depth_for(3, torch.device("cpu")) == 3


def _epoch(world, prefetch: int, tmp_path) -> list:
    cfg = load_config(
        "tiny",
        overrides=[f"train.prefetch_batches={prefetch}", "train.shuffle_buffer_rows=300", "train.chunk_rows=100",
                   f"train.image_store_dir={tmp_path}"],
    )  # fmt: skip
    prepared = prepare(world, cfg)
    model = build_model(cfg, prepared.encoder)
    rng = seed_everything(cfg.train.seed)
    run = Run(cfg, prepared, model, model, make_optimizer(model, cfg), torch.device("cpu"), distributed.Ranks(), rng)
    run.dropout = ItemIdDropout(cfg.train)
    return list(assembled_batches(run))


def test_assembling_ahead_yields_the_same_batches_and_images_as_inline(tiny_world, tmp_path):
    world = open_world(tiny_world)
    inline, threaded = _epoch(world, 0, tmp_path), _epoch(world, 3, tmp_path)
    assert len(inline) == len(threaded) > 2
    for (rows_a, a, img_a), (rows_b, b, img_b) in zip(inline, threaded, strict=True):
        assert rows_a == rows_b
        for name in ("sparse", "dense", "item_row", "label"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
        torch.testing.assert_close(img_a.images, img_b.images)
        unique = torch.unique(a.item_row)
        torch.testing.assert_close(img_a.fetch(img_a.rows)[0], img_a.source.fetch(img_a.rows)[0])
        assert torch.equal(img_a.rows[: len(unique)], unique)


def test_gathered_images_answer_other_rows_from_the_source(tiny_with, tiny_world):
    world = open_world(tiny_world)
    prepared = prepare(world, tiny_with("train.decode_once=false"))
    rows = torch.tensor([1, 2])
    gathered = GatheredImages(rows, *prepared.bank.fetch(rows), prepared.bank)
    other = torch.tensor([3, 4, 5])
    torch.testing.assert_close(gathered.fetch(other)[0], prepared.bank.fetch(other)[0])
    assert len(gathered) == len(prepared.bank)


def test_days_encoded_once_yield_the_vocabularies_and_batches_of_reading_them_every_epoch(tiny_world, tmp_path):
    """`train.encode_once` changes where an epoch's chunks come from, not what they hold: the same vocabularies
    as the separate fit pass, and the same batches (images included) epoch after epoch; its files go when the
    preparation is closed."""
    world = open_world(tiny_world)
    once, every = _epochs(world, "true", tmp_path), _epochs(world, "false", tmp_path)
    assert once[0].encoder.to_dict() == every[0].encoder.to_dict()
    assert len(once[1]) == len(every[1]) > 4
    for (rows_a, a, img_a), (rows_b, b, img_b) in zip(once[1], every[1], strict=True):
        assert rows_a == rows_b
        for name in ("sparse", "dense", "item_row", "label"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
        torch.testing.assert_close(img_a.images, img_b.images)
    folder = once[0].encoded.folder
    assert folder.is_dir() and every[0].encoded is None
    once[0].encoded.close()
    assert not folder.exists()


def _epochs(world, encode_once: str, tmp_path) -> tuple:
    """A preparation and two epochs of its batches, with chunks smaller than a day and a buffer smaller than
    the data (so chunk boundaries and the shuffle's carry-over both matter)."""
    cfg = load_config(
        "tiny",
        overrides=[f"train.encode_once={encode_once}", "train.shuffle_buffer_rows=300", "train.chunk_rows=70",
                   "train.prefetch_batches=0", f"train.image_store_dir={tmp_path}"],
    )  # fmt: skip
    prepared = prepare(world, cfg)
    model = build_model(cfg, prepared.encoder)
    rng = seed_everything(cfg.train.seed)
    run = Run(cfg, prepared, model, model, make_optimizer(model, cfg), torch.device("cpu"), distributed.Ranks(), rng)
    run.dropout = ItemIdDropout(cfg.train)
    return prepared, list(assembled_batches(run)) + list(assembled_batches(run))
