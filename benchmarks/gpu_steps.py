"""On CUDA: how busy the accelerator is per training step, with batches assembled inline or ahead, and
whether `torch.compile` of the CNN over the bucketed image shapes (`IMAGE_BUCKET`) helps the launch-bound
step. Prints and saves the figures; run by benchmarks/gpu_data_path.sh where a GPU is lent.

    python benchmarks/gpu_steps.py --profile small --data data/small --steps 40 --out /tmp/gpu_steps.json

GPU busy time is the sum of the CUDA kernels' time in a torch.profiler trace of the timed steps; busy share
= busy / wall. Needs CUDA (exits with a message otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.training import distributed
from cscnn.training.checkpoint import build_model
from cscnn.training.recipe import ItemIdDropout
from cscnn.training.train import Run, assembled_batches, make_optimizer, prepare, seed_everything, train_step


def measure(cfg, prepared, steps: int, compiled: bool, warmup: int = 5) -> dict:
    device = torch.device("cuda")
    rng = seed_everything(cfg.train.seed)
    model = build_model(cfg, prepared.encoder).to(device).train()
    if compiled and model.backbone is not None:
        model.backbone = torch.compile(model.backbone, dynamic=False)  # one graph per bucketed batch shape
    run = Run(cfg, prepared, model, model, make_optimizer(model, cfg), device, distributed.Ranks(), rng)
    run.dropout = ItemIdDropout(cfg.train)
    batches = assembled_batches(run)
    for rows, mine, images in itertools.islice(batches, warmup):
        train_step(model, mine.to(device, non_blocking=True), images, run.optimizer, cfg.train.dedup, rows)
    torch.cuda.synchronize()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        for rows, mine, images in itertools.islice(batches, steps):
            train_step(model, mine.to(device, non_blocking=True), images, run.optimizer, cfg.train.dedup, rows)
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    batches.close()
    busy = sum(e.self_device_time_total for e in trace.key_averages()) / 1e6  # microseconds -> seconds
    return {
        "prefetch_batches": cfg.train.prefetch_batches,
        "compiled": compiled,
        "ms_per_step": 1000 * wall / steps,
        "gpu_busy_ms_per_step": 1000 * busy / steps,
        "busy_share": busy / wall,
        "impressions_per_s": steps * cfg.train.batch_size / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="small")
    parser.add_argument("--data", type=Path, default=Path("data/small"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu_steps.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_steps.py needs CUDA; on CPU use benchmarks/data_path.py")
    base = load_config(args.profile, overrides=["model.variant=cscnn", f"train.batch_size={args.batch_size}"])
    generate_world(base.world, args.data)
    prepared = prepare(open_world(args.data), base)
    rows = []
    for prefetch, compiled in ((0, False), (4, False), (4, True)):
        cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, prefetch_batches=prefetch))
        row = measure(cfg, prepared, args.steps, compiled)
        rows.append(row)
        print(
            f"prefetch={prefetch} compiled={compiled!s:5}: {row['ms_per_step']:6.1f} ms/step, GPU busy "
            f"{row['gpu_busy_ms_per_step']:6.1f} ms/step ({100 * row['busy_share']:.0f}%), "
            f"{row['impressions_per_s']:.0f} impressions/s",
            flush=True,
        )
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved -> {args.out}")


if __name__ == "__main__":
    main()
