"""Training throughput (impressions/s) with and without the per-batch image dedup.

Runs real optimisation steps of the end-to-end model on a synthetic world and prints, then saves, the
figures. Usage (from the repository root, venv active):

    python benchmarks/train_throughput.py --profile small --data data/small --steps 20

The world is generated first if the folder does not hold it yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.training.checkpoint import build_model
from cscnn.training.train import make_optimizer, prepare, seed_everything, train_step


def measure(cfg, prepared, dedup: bool, steps: int, warmup: int = 2) -> dict:
    rng = seed_everything(cfg.train.seed)
    model = build_model(cfg, prepared.encoder).train()
    optimizer = make_optimizer(model, cfg)
    data = prepared.data["train"]
    if (warmup + steps) * cfg.train.batch_size > len(data):
        raise SystemExit(f"only {len(data)} training impressions: fewer steps or a smaller batch, please")
    batches = data.batches(cfg.train.batch_size, rng)
    timings, uniques = [], []
    for step in range(warmup + steps):
        batch = next(batches)
        start = time.perf_counter()
        _, n_images = train_step(model, batch, prepared.bank, optimizer, dedup)
        if step >= warmup:
            timings.append(time.perf_counter() - start)
            uniques.append(n_images)
    seconds = float(np.sum(timings))
    return {
        "variant": cfg.model.variant,
        "dedup": dedup,
        "batch_size": cfg.train.batch_size,
        "steps": steps,
        "impressions_per_s": steps * cfg.train.batch_size / seconds,
        "ms_per_step": 1000 * seconds / steps,
        "cnn_images_per_batch": float(np.mean(uniques)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="small")
    parser.add_argument("--data", type=Path, default=Path("data/small"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default="cnn,cscnn")
    parser.add_argument("--batch-size", type=int, default=0, help="impressions per batch (default: the profile's)")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/train_throughput_<profile>.json"
    )
    args = parser.parse_args()
    args.out = args.out or Path(f"benchmarks/results/train_throughput_{args.profile}.json")

    overrides = [f"train.batch_size={args.batch_size}"] if args.batch_size else []
    base = load_config(args.profile, overrides=overrides)
    torch.set_num_threads(base.train.num_threads or os.cpu_count() or 1)
    generate_world(base.world, args.data)
    world = open_world(args.data)
    rows = []
    for variant in args.variants.split(","):
        cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, variant=variant))
        prepared = prepare(world, cfg)
        for dedup in (True, False):
            row = measure(cfg, prepared, dedup, args.steps)
            rows.append(row)
            print(
                f"{variant:8s} dedup={'on ' if dedup else 'off'} {row['impressions_per_s']:9.0f} impressions/s "
                f"{row['ms_per_step']:8.1f} ms/step  CNN images/batch {row['cnn_images_per_batch']:.0f} "
                f"of {row['batch_size']}"
            )
        on, off = rows[-2], rows[-1]
        print(f"{variant:8s} speedup from dedup: {on['impressions_per_s'] / off['impressions_per_s']:.1f}x")
    result = {
        "command": f"python benchmarks/train_throughput.py --profile {args.profile} --data {args.data} "
        f"--steps {args.steps} --variants {args.variants} --batch-size {base.train.batch_size}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved -> {args.out}")


if __name__ == "__main__":
    main()
