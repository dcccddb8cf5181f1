"""Training throughput (impressions/s): with and without the per-batch image dedup, and the streamed data
path (Arrow record batches, shuffle buffer, images decoded on demand through a bounded cache) against the
in-memory one it replaced (every training row encoded and every catalogue image decoded up front).

Runs real optimisation steps of the end-to-end model on a synthetic world and prints, then saves, the
figures. `impressions_per_s` times the optimisation steps alone (the dedup comparison);
`end_to_end_impressions_per_s` times everything from nothing to the last step, loading included (the data
path comparison). Usage (from the repository root, venv active):

    python benchmarks/train_throughput.py --profile small --data data/small --steps 20
    python benchmarks/train_throughput.py --profile bench --data data/bench --steps 200 --paths streamed,memory

The world is generated first if the folder does not hold it yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.training.allocator import reuse_freed_memory
from cscnn.training.checkpoint import build_model
from cscnn.training.features import encode, feature_frame, image_bank
from cscnn.training.stream import shuffled_batches
from cscnn.training.train import make_optimizer, prepare, seed_everything, select_device, train_step


def batches_of(path: str, cfg, world, prepared, rng):
    """Training batches and the image source of one data path, built lazily (the timing includes it)."""
    if path == "streamed":
        stream = shuffled_batches(
            world,
            prepared.split.train,
            prepared.encoder,
            cfg.train.batch_size,
            cfg.train.shuffle_buffer_rows,
            cfg.train.chunk_rows,
            rng,
        )
        return (b.to_batch() for b in stream), prepared.bank
    data = encode(feature_frame(world, world.impressions(prepared.split.train)), prepared.encoder)
    return data.batches(cfg.train.batch_size, rng), image_bank(world, prepared.encoder, cfg.model.image_size)


def measure(cfg, world, dedup: bool, steps: int, path: str = "streamed", warmup: int = 2) -> dict:
    started = time.perf_counter()
    prepared = prepare(world, cfg)
    rng = seed_everything(cfg.train.seed)
    device = select_device(cfg.train.device)  # train.device: auto (CUDA when there is one), cpu or cuda
    model = build_model(cfg, prepared.encoder).to(device).train()
    optimizer = make_optimizer(model, cfg)
    batches, bank = batches_of(path, cfg, world, prepared, rng)
    batches = (batch.to(device) for batch in batches)
    timings, uniques = [], []
    for step in range(warmup + steps):
        batch = next(batches, None)
        if batch is None:
            raise SystemExit(f"only {step} batches of training impressions: fewer steps or a smaller batch, please")
        start = time.perf_counter()
        _, n_images = train_step(model, batch, bank, optimizer, dedup)
        if device.type == "cuda":
            torch.cuda.synchronize()  # the step's kernels are done before the clock stops
        if step >= warmup:
            timings.append(time.perf_counter() - start)
            uniques.append(n_images)
    seconds, total = float(np.sum(timings)), time.perf_counter() - started
    return {
        "variant": cfg.model.variant,
        "data_path": path,
        "dedup": dedup,
        "device": str(device),
        "batch_size": cfg.train.batch_size,
        "steps": steps,
        "impressions_per_s": steps * cfg.train.batch_size / seconds,
        "end_to_end_impressions_per_s": (warmup + steps) * cfg.train.batch_size / total,
        "ms_per_step": 1000 * seconds / steps,
        "cnn_images_per_batch": float(np.mean(uniques)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="small")
    parser.add_argument("--data", type=Path, default=Path("data/small"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default="cnn,cscnn")
    parser.add_argument("--paths", default="streamed", help="data paths to compare: streamed, memory (comma list)")
    parser.add_argument("--batch-size", type=int, default=0, help="impressions per batch (default: the profile's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, key=value")
    parser.add_argument("--no-dedup-off", action="store_true", help="skip the dedup=off rows (the cost ratio only)")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/train_throughput_<profile>.json"
    )
    args = parser.parse_args()
    args.out = args.out or Path(f"benchmarks/results/train_throughput_{args.profile}.json")

    overrides = [f"train.batch_size={args.batch_size}"] if args.batch_size else []
    base = load_config(args.profile, overrides=overrides + args.overrides)
    torch.set_num_threads(base.train.num_threads or os.cpu_count() or 1)
    if base.train.reuse_freed_memory:  # as `cscnn train` does (cscnn.training.allocator)
        reuse_freed_memory()
    generate_world(base.world, args.data)
    world = open_world(args.data)
    rows = []
    for variant in args.variants.split(","):
        cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, variant=variant))
        for dedup in (True,) if args.no_dedup_off else (True, False):
            row = measure(cfg, world, dedup, args.steps)
            rows.append(row)
            print(
                f"{variant:8s} dedup={'on ' if dedup else 'off'} {row['impressions_per_s']:9.0f} impressions/s "
                f"{row['ms_per_step']:8.1f} ms/step  CNN images/batch {row['cnn_images_per_batch']:.0f} "
                f"of {row['batch_size']}"
            )
        on, off = (rows[-1], None) if args.no_dedup_off else (rows[-2], rows[-1])
        if off is not None:
            print(f"{variant:8s} speedup from dedup: {on['impressions_per_s'] / off['impressions_per_s']:.1f}x")
        by_path = {"streamed": on}
        for path in [p for p in args.paths.split(",") if p != "streamed"]:
            by_path[path] = row = measure(cfg, world, True, args.steps, path)
            rows.append(row)
        if len(by_path) > 1:
            ratio = on["end_to_end_impressions_per_s"] / by_path["memory"]["end_to_end_impressions_per_s"]
            print(
                f"{variant:8s} end to end, loading included: streamed {on['end_to_end_impressions_per_s']:.0f}, "
                f"in memory {by_path['memory']['end_to_end_impressions_per_s']:.0f} impressions/s ({ratio:.2f}x)"
            )
    step_ms = {r["variant"]: r["ms_per_step"] for r in rows if r["dedup"] and r["data_path"] == "streamed"}
    if "cnn" in step_ms:
        for variant, ms in step_ms.items():
            print(f"{variant:8s} step cost vs cnn: {ms / step_ms['cnn']:.2f}x")
    result = {
        "command": " ".join(["python benchmarks/train_throughput.py", *sys.argv[1:]]),
        "config": {"model": dataclasses.asdict(base.model), "train": dataclasses.asdict(base.train)},
        "step_cost_vs_cnn": {v: ms / step_ms["cnn"] for v, ms in step_ms.items()} if "cnn" in step_ms else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved -> {args.out}")


if __name__ == "__main__":
    main()
