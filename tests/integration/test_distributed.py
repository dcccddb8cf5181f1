"""Synchronous data parallelism and streamed data (issue: train where the data is).

Real `torchrun` runs with the gloo backend on this machine's CPU (2 workers); NCCL needs CUDA, which these
machines do not have: only its refusal is tested here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cscnn.data.io import open_world
from cscnn.entrypoints.cli import app
from cscnn.errors import ConfigError
from cscnn.training import distributed, launch
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.features import EncodedSplit, FeatureEncoder, encode, feature_frame
from cscnn.training.stream import encoded_chunks, fit_encoder, shuffled_batches

HELPERS = Path(__file__).parents[1] / "helpers"
# No dropout: its masks are drawn per process, so they would differ between one worker and two.
# An odd global batch: the two shares differ by a row, so the loss scaling matters too.
EXACT = ["model.dropout=0", "train.epochs=2", "train.batch_size=63", "train.shuffle_buffer_rows=500"]


def test_streamed_and_in_memory_encodings_are_identical(tiny_world):
    world = open_world(tiny_world)
    days = world.days[:2]
    frame = feature_frame(world, world.impressions(days))
    whole = FeatureEncoder.fit(frame)
    streamed = fit_encoder(world, days, chunk_rows=37)
    assert streamed == whole
    at_once = encode(frame, whole)
    chunked = EncodedSplit.concat(list(encoded_chunks(world, days, streamed, chunk_rows=37)))
    for name in ("sparse", "dense", "item_row", "label", "category", "cold"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(at_once, name), err_msg=name)


def test_the_shuffle_buffer_yields_every_row_once_in_a_seeded_order(tiny_world):
    world = open_world(tiny_world)
    days = world.days[:3]
    encoder = fit_encoder(world, days, 100)
    rows = len(world.impressions(days))

    def epoch(seed: int) -> list[EncodedSplit]:
        rng = np.random.default_rng(seed)
        return list(shuffled_batches(world, days, encoder, 64, buffer_rows=200, chunk_rows=50, rng=rng))

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(len(b) == 64 for b in first[:-1]) and sum(len(b) for b in first) == rows
    ids = np.concatenate([b.sparse for b in first])
    everything = encode(feature_frame(world, world.impressions(days)), encoder).sparse
    assert sorted(map(tuple, ids)) == sorted(map(tuple, everything))  # each row once
    assert all(np.array_equal(a.sparse, b.sparse) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].sparse, other[0].sparse)
    assert not np.array_equal(ids, everything)  # shuffled, not read order


def test_two_gloo_workers_train_the_same_model_as_one(tiny_with, tiny_world, tmp_path):
    """Two processes, each with half of every global batch, all-reducing gradients: the same parameters as
    one process on the whole batch. Two models trained side by side on halves would not match."""
    one, two = tmp_path / "one", tmp_path / "two"
    cfg = tiny_with(*EXACT)
    launch.run_training(tiny_world, cfg, one)
    args = ["train", "--data", str(tiny_world), "--profile", "tiny", "--out", str(two), "--workers", "2", "--quiet"]
    result = CliRunner().invoke(app, [*args, *(f"--set={o}" for o in EXACT)])
    assert result.exit_code == 0, result.output
    assert "with 2 worker(s)" in result.output
    single, card_one = load_checkpoint(one)[0], load_checkpoint(one)[3]
    double, card_two = load_checkpoint(two)[0], load_checkpoint(two)[3]
    assert card_one["workers"] == 1 and card_two["workers"] == 2
    for (name, a), (_, b) in zip(single.state_dict().items(), double.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"parameter {name} differs")
    assert [h["val_auc"] for h in card_two["history"]] == pytest.approx([h["val_auc"] for h in card_one["history"]])
    assert card_one["best_epoch"] == card_two["best_epoch"]


def test_the_embedding_table_sharded_over_workers_is_the_single_table(tiny_with, tiny_world, tmp_path):
    model = tmp_path / "model"
    launch.run_training(tiny_world, tiny_with("train.epochs=1"), model)
    one = launch.run_embedding(model, tiny_world, tmp_path / "one")
    two = launch.run_embedding(model, tiny_world, tmp_path / "two", workers=2)
    assert one["n_items"] == two["n_items"] == len(open_world(tiny_world).items)
    np.testing.assert_allclose(
        np.load(tmp_path / "two" / "vectors.npy"), np.load(tmp_path / "one" / "vectors.npy"), rtol=1e-5, atol=1e-6
    )


def test_a_dead_rank_ends_the_job_with_an_error_naming_it(tiny_with, tiny_world, tmp_path):
    cfg = tiny_with("train.dist_timeout_s=30")
    args = launch.worker_args(tiny_world, cfg, tmp_path / "model")
    started = time.perf_counter()
    with pytest.raises(distributed.DistributedError, match="rank 1 exited with code 7"):
        distributed.launch(args, 2, env={"PYTHONPATH": str(HELPERS)}, module="dying_worker")
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "model").exists()  # nothing half-written


def test_impossible_worker_settings_are_refused_before_anything_starts(tiny_with):
    with pytest.raises(ConfigError, match=r"larger than train\.batch_size"):
        tiny_with("train.workers=4", "train.batch_size=2")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="nccl needs CUDA"):
            distributed.check_workers(tiny_with("train.dist_backend=nccl").train)
    with pytest.raises(ConfigError, match="must be integers"):
        distributed.ranks_from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_one_process_with_no_launcher_is_rank_zero_of_one():
    ranks = distributed.ranks_from_env({})
    assert (ranks.rank, ranks.world_size, ranks.distributed, ranks.is_main) == (0, 1, False, True)
    assert distributed.local_slice(10, distributed.Ranks(1, 3)) == slice(3, 6)
    assert [distributed.local_slice(5, distributed.Ranks(r, 2)) for r in (0, 1)] == [slice(0, 2), slice(2, 5)]
    assert "WORLD_SIZE" not in os.environ or os.environ["WORLD_SIZE"] == "1"


def test_the_image_cache_serves_what_decoding_everything_serves(tiny_world):
    from cscnn.errors import ImageError
    from cscnn.training.features import CachedImages, image_bank

    world = open_world(tiny_world)
    encoder = fit_encoder(world, world.days[:2], 1000)
    eager = image_bank(world, encoder, 32)
    cache = CachedImages(world, encoder, 32, capacity=8)
    rng = np.random.default_rng(0)
    for _ in range(20):  # batches of up to 8 distinct rows (the capacity), with repeats
        rows = torch.from_numpy(rng.choice(len(eager), size=12, replace=True) % 8 + rng.integers(0, len(eager) - 8))
        images, categories = cache.fetch(rows)
        torch.testing.assert_close(images, eager.images[rows])
        torch.testing.assert_close(categories, eager.categories[rows])
    assert cache._filled <= 8 and cache.decoded < 20 * 12  # bounded, and hits were served from memory
    wide = torch.arange(20)  # more distinct rows than the cache holds: decoded, still right
    torch.testing.assert_close(cache.fetch(wide)[0], eager.images[wide])
    broken = tiny_world.parent / "broken-world"
    import shutil

    shutil.copytree(tiny_world, broken)
    first = world.items["image"].iloc[3]
    (broken / "images" / first).write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"items\.parquet row 3"):
        CachedImages(open_world(broken), encoder, 32, capacity=8).fetch(torch.tensor([3]))
