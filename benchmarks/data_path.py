"""The training and embedding data path (issue 23): can the CPU feed an accelerator's step?

Three figures, printed and saved as JSON (benchmarks/results/data_path_<label>.json):

1. `data`: the data path alone, no model: one epoch of the `bench` world's training days through the batch
   assembly of `cscnn train` (shuffle buffer, item-id dropout, this rank's share, feature gather, the gather
   of each batch's unique images), in impressions/s. Two epochs: the first pays for decoding (cache misses
   before issue 23; the store's build after it, reported on its own), the second shows the steady state.
2. `train`: end-to-end CPU training, `cscnn.training.train.train` of one variant on `small` (every epoch's
   impressions/s and the whole run's wall time, validation included).
3. `embed`: `cscnn embed` (`export_table`) of that run's checkpoint over its world, in images/s: with a
   fresh store (the build included) and again with the store in place.

The same script runs against another checkout's code, for a before/after on one machine state:

    python benchmarks/data_path.py --label after
    PYTHONPATH=/tmp/before/src python benchmarks/data_path.py --label before   # e.g. `git archive` of main

Settings that only exist after issue 23 (the store folder) are passed only where the code has them. Worlds
are generated under `data/` first if missing. Timings on a shared 2-core machine are noisy: pause other
work while measuring.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from cscnn.config import TrainConfig, load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.training import distributed
from cscnn.training.allocator import reuse_freed_memory
from cscnn.training.embed import export_table
from cscnn.training.recipe import ItemIdDropout
from cscnn.training.stream import count_rows, shuffled_batches
from cscnn.training.train import prepare, seed_everything, train

AFTER = hasattr(TrainConfig, "decode_once")  # the code under test has the decoded store and the prefetch


def config(profile: str, variant: str, store: Path, extra: list[str]):
    overrides = [f"model.variant={variant}", *extra]
    if AFTER:
        overrides.append(f"train.image_store_dir={store}")
    cfg = load_config(profile, overrides=overrides)
    torch.set_num_threads(cfg.train.num_threads or os.cpu_count() or 1)
    if cfg.train.reuse_freed_memory:
        reuse_freed_memory()
    return cfg


def ensure_world(cfg, profile: str) -> Path:
    folder = Path("data") / profile
    generate_world(cfg.world, folder)
    return folder


def inline_batches(prepared, cfg, rng):
    """The assembly as the training loop did it inline before issue 23 (the unique-image gather was the
    model's, inside the step): what the `before` figure times."""
    dropout = ItemIdDropout(cfg.train)
    stream = shuffled_batches(
        prepared.world, prepared.split.train, prepared.encoder, cfg.train.batch_size,
        cfg.train.shuffle_buffer_rows, cfg.train.chunk_rows, rng,
    )  # fmt: skip
    for global_batch in stream:
        mine = dropout(global_batch).take(distributed.local_slice(len(global_batch), distributed.Ranks())).to_batch()
        images = prepared.bank.fetch(torch.unique(mine.item_row))
        yield len(global_batch), mine, images


def library_run(prepared, cfg, rng):
    """A run for `cscnn.training.train.assembled_batches`, the training loop's own assembly (in its background
    thread); its model is built but never stepped."""
    from cscnn.training.checkpoint import build_model
    from cscnn.training.train import Run, make_optimizer

    model = build_model(cfg, prepared.encoder)
    run = Run(cfg, prepared, model, model, make_optimizer(model, cfg), torch.device("cpu"), distributed.Ranks(), rng)
    run.dropout = ItemIdDropout(cfg.train)
    return run


def measure_data(args, store: Path) -> dict:
    cfg = config(args.data_profile, "cscnn", store, args.overrides)
    world = open_world(ensure_world(cfg, args.data_profile))
    started = time.perf_counter()
    prepared = prepare(world, cfg)
    ready = time.perf_counter() - started  # vocabularies + image source (the store's build after issue 23)
    rng = seed_everything(cfg.train.seed)
    epochs, run = [], library_run(prepared, cfg, rng) if AFTER else None
    for _ in range(2):
        start, rows, images = time.perf_counter(), 0, 0
        if AFTER:
            from cscnn.training.train import assembled_batches

            batches = assembled_batches(run)
        else:
            batches = inline_batches(prepared, cfg, rng)
        for global_rows, _batch, gathered in batches:
            rows += global_rows
            images += len(gathered.rows) if AFTER else len(gathered[0])
        seconds = time.perf_counter() - start
        epochs.append({"impressions": rows, "seconds": seconds, "impressions_per_s": rows / seconds, "images": images})
        print(f"data path alone, epoch {len(epochs)}: {rows / seconds:9.0f} impressions/s ({rows} in {seconds:.1f} s)")
    print(f"prepare (vocabularies + image source): {ready:.1f} s")
    rows = count_rows(world, prepared.split.train)
    return {"profile": args.data_profile, "train_rows": rows, "prepare_seconds": ready, "epochs": epochs}


def measure_train(args, store: Path, model_dir: Path) -> dict:
    extra = [f"train.epochs={args.epochs}", f"train.device={args.device}", *args.overrides]
    cfg = config(args.profile, args.variant, store, extra)
    world = open_world(ensure_world(cfg, args.profile))
    started = time.perf_counter()
    result = train(world, cfg, out=model_dir, progress=False)
    wall = time.perf_counter() - started
    epochs = [{k: h[k] for k in ("epoch", "impressions", "seconds", "val_auc")} for h in result.history]
    for h in epochs:
        print(f"train {args.variant} epoch {h['epoch']}: {h['impressions'] / h['seconds']:8.0f} impressions/s")
    print(f"train {args.variant} whole run ({len(epochs)} epochs, validation included): {wall:.1f} s")
    return {"profile": args.profile, "variant": args.variant, "wall_seconds": wall, "epochs": epochs}


def measure_embed(args, model_dir: Path, store: Path) -> dict:
    world_dir = Path("data") / args.profile
    runs = []
    for attempt in ("fresh store", "store in place") if AFTER else ("cache", "cache again"):
        if AFTER and attempt == "fresh store":
            for old in store.glob("*.npy"):
                old.unlink()
        start = time.perf_counter()
        meta = export_table(model_dir, world_dir, Path(tempfile.mkdtemp()) / "table", device=args.device)
        seconds = time.perf_counter() - start
        runs.append({"run": attempt, "images": meta["n_items"], "seconds": seconds})
        print(f"embed ({attempt}): {meta['n_items'] / seconds:8.0f} images/s ({meta['n_items']} in {seconds:.1f} s)")
    return {"profile": args.profile, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="after" if AFTER else "before")
    parser.add_argument("--parts", default="data,train,embed")
    parser.add_argument("--data-profile", default="bench", help="world of the data-path figure")
    parser.add_argument("--profile", default="small", help="world of the training and embedding figures")
    parser.add_argument("--variant", default="cscnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="train.device of the training and embedding figures")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, key=value")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/data_path_<label>.json")
    args = parser.parse_args()
    out = args.out or Path(f"benchmarks/results/data_path_{args.label}.json")
    parts = args.parts.split(",")
    scratch = Path(tempfile.mkdtemp(prefix="cscnn-data-path-"))
    store, model_dir = scratch / "store", scratch / "model"
    result: dict = {
        "command": " ".join(["python benchmarks/data_path.py", *sys.argv[1:]]),
        "label": args.label,
        "code": "decoded store + prefetch" if AFTER else "decode on cache misses, inline assembly",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    if "data" in parts:
        result["data"] = measure_data(args, store)
    if "train" in parts or "embed" in parts:
        result["train"] = measure_train(args, store, model_dir)
    if "embed" in parts:
        result["embed"] = measure_embed(args, model_dir, store)
    if AFTER:
        result["config"] = {k: v for k, v in dataclasses.asdict(load_config(args.profile).train).items()
                            if k in ("decode_once", "prefetch_batches", "image_store_keep")}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"saved -> {out}")


if __name__ == "__main__":
    main()
