"""Training as the data grows and as workers are added: peak memory against the number of days, and one
against several data-parallel workers. Prints the figures and saves them as JSON.

    # peak RSS of `cscnn train` on bench-shaped worlds of 1x, 4x and 16x the days (one epoch each), or the rows
    python benchmarks/train_scaling.py memory --scales 1,4,16
    python benchmarks/train_scaling.py memory --scales 1,4,16 --scale-by rows
    # the same with another checkout's code (e.g. the in-memory path before streaming, in a git worktree)
    python benchmarks/train_scaling.py memory --scales 1,4,16 --src /tmp/before/src --label in-memory

    # 1 vs 2 workers (torchrun, gloo) on one machine, and the bytes all-reduced per step
    python benchmarks/train_scaling.py workers --workers 1,2

Peak RSS is the child's `ru_maxrss` (a wrapper process runs the training and reports it). Worlds are
generated once under `--data-root` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world

# Runs the CLI given after it and prints the peak RSS (KiB) of that process: the largest child it waited for.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n"
)
# The `cscnn` command of whatever source tree is first on PYTHONPATH (this one, or --src).
CLI = "import sys; from cscnn.entrypoints.cli import app; sys.argv[0] = 'cscnn'; app()"


def world_for(scale: int, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """A bench-shaped world with `scale` x the base number of days (the catalogue grows by day too: new ads
    every day), or `scale` x the rows of each day (`--scale-by rows`: the same days and catalogue)."""
    days, per_day = args.base_days, args.rows_per_day
    if args.scale_by == "days":
        days *= scale
    else:
        per_day *= scale
    overrides = [f"world.n_days={days}", f"world.impressions_per_day={per_day}"]
    folder = args.data_root / f"days{days}-rows{per_day}"
    generate_world(load_config("bench", overrides=overrides).world, folder)
    return folder, overrides


def train_command(world: Path, out: Path, extra: list[str]) -> list[str]:
    sets = ["train.epochs=1", "train.patience=1", *extra]
    return [sys.executable, "-c", CLI, "train", "--data", str(world), "--profile", "bench", "--out", str(out),
            "--variant", "cscnn", "--quiet", *(f"--set={s}" for s in sets)]  # fmt: skip


def peak_rss(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Peak RSS (MiB) and wall time of `command`, and its output."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith("PEAK_RSS_KB")), None)
    if line is None or line.split()[2] != "0":
        raise SystemExit(f"training failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return int(line.split()[1]) / 1024, seconds, done.stdout


def memory(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        world_dir, _ = world_for(scale, args)
        world = open_world(world_dir)
        n_rows = sum(world.day_rows(d) for d in world.days)
        out = args.data_root / "runs" / f"{args.label}-x{scale}"
        mib, seconds, _ = peak_rss(train_command(world_dir, out, args.set or []), env)
        rows.append({"scale": scale, "days": len(world.days), "rows": n_rows, "items": len(world.items),
                     "peak_rss_mib": round(mib, 1), "seconds": round(seconds, 1)})  # fmt: skip
        print(f"{args.label:10s} x{scale:<3d} {len(world.days):3d} days {n_rows:>10,d} rows "
              f"{len(world.items):>6,d} items: peak RSS {mib:7.1f} MiB, {seconds:6.1f} s", flush=True)  # fmt: skip
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        row["rss_vs_first"] = round(row["peak_rss_mib"] / base, 3)
    print("peak RSS relative to the first scale: " + ", ".join(f"x{r['scale']}: {r['rss_vs_first']:.2f}" for r in rows))
    return {"label": args.label, "scale_by": args.scale_by, "src": args.src or "this checkout", "rows": rows}


def workers(args: argparse.Namespace) -> dict:
    from cscnn.training.checkpoint import build_model
    from cscnn.training.train import prepare

    world_dir, overrides = world_for(1, args)
    cfg = load_config("bench", overrides=[*overrides, "model.variant=cscnn"])
    model = build_model(cfg, prepare(open_world(world_dir), cfg, images=False).encoder)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    rows = []
    for n in [int(w) for w in args.workers.split(",")]:
        out = args.data_root / "runs" / f"workers{n}"
        command = train_command(world_dir, out, [f"train.workers={n}", *(args.set or [])])
        mib, seconds, _ = peak_rss(command, dict(os.environ))
        card = json.loads((out / "model.json").read_text())
        rows.append({"workers": n, "seconds": round(seconds, 1), "train_seconds": round(card["train_seconds"], 1),
                     "val_auc": card["val_auc"], "fingerprint": card["fingerprint"],
                     "peak_rss_mib_largest_process": round(mib, 1)})  # fmt: skip
        print(f"{n} worker(s): {seconds:6.1f} s wall ({card['train_seconds']:.1f} s training), "
              f"val AUC {card['val_auc']:.5f}, model {card['fingerprint']}", flush=True)  # fmt: skip
    world = open_world(world_dir)
    steps = -(-sum(world.day_rows(d) for d in world.days[:-2]) // cfg.train.batch_size)
    print(f"all-reduced per step: {grad_bytes / 2**20:.2f} MiB of gradients (float32) per worker; "
          f"{steps} steps an epoch -> {steps * grad_bytes / 2**30:.2f} GiB per worker per epoch")  # fmt: skip
    return {"rows": rows, "allreduce_bytes_per_step": grad_bytes, "steps_per_epoch": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("memory", "workers"))
    parser.add_argument("--data-root", type=Path, default=Path("data/scaling"))
    parser.add_argument("--base-days", type=int, default=4, help="days of the 1x world (the bench profile's)")
    parser.add_argument("--rows-per-day", type=int, default=25_000)
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--scale-by", choices=("days", "rows"), default="days", help="memory: what grows")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--src", help="memory: the source tree to run (PYTHONPATH), default this checkout")
    parser.add_argument("--label", default="streamed")
    parser.add_argument("--set", action="append", help="extra config override for the training runs")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/train_scaling_<what>[_<label>].json")
    args = parser.parse_args()
    suffix = f"_{args.scale_by}_{args.label}" if args.what == "memory" else ""
    out = args.out or Path(f"benchmarks/results/train_scaling_{args.what}{suffix}.json")
    result = memory(args) if args.what == "memory" else workers(args)
    result |= {
        "command": "python benchmarks/train_scaling.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved -> {out}")


if __name__ == "__main__":
    main()
