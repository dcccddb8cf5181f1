"""Online A/B on the demo world through the real ranking service: CSCNN against no-image and against the plain
CNN, and the requests per second the service sustains while the experiment runs (docs/online.md).

    python benchmarks/online_ab.py                      # work folder data/online-ab, about 10 minutes on 2 cores

1. generates the `demo` world (deterministic) into WORK/world;
2. trains cscnn, cnn and no_image on its days up to --train-until (the demo's broken day 5 is after it) and
   builds each model's embedding table (kept: a rerun reuses them);
3. for each pair (baseline, cscnn): `cscnn simulate` for --day with both arms served by their own
   `bentoml serve` of bento/ (local folders), 50/50 per user, --requests requests;
4. prints and saves the tables and the throughput to benchmarks/results/online_ab.json and WORK/<pair>/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from cscnn.config import load_config
from cscnn.data.synth import generate_world
from cscnn.online.arms import ArmSpec
from cscnn.online.served_day import simulate
from cscnn.state import State
from cscnn.training.embed import export_table
from cscnn.training.launch import run_training

VARIANTS = ("cscnn", "cnn", "no_image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("data/online-ab"))
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--train-until", default="2026-01-04")
    parser.add_argument("--day", default="2026-01-06", help="the simulated day (its new ads are cold-start ads)")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0, help="training seed of every variant")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/online_ab.json"))
    args = parser.parse_args()

    cfg = load_config(args.profile, overrides=[f"online.requests={args.requests}", f"train.seed={args.seed}"])
    world = args.work / "world"
    generate_world(cfg.world, world)
    arms = {}
    for variant in VARIANTS:
        model, table = args.work / "models" / variant, args.work / "tables" / variant
        if not (model / "model.json").is_file():
            started = time.perf_counter()
            variant_cfg = load_config(args.profile, overrides=[f"model.variant={variant}", f"train.seed={args.seed}"])
            card = run_training(world, variant_cfg, model, until=args.train_until)
            seconds = time.perf_counter() - started
            print(f"{variant}: trained in {seconds:.0f} s, val AUC {card.get('val_auc', float('nan')):.4f}", flush=True)
        if variant == "no_image":  # no visual part, no table: the service needs only the catalogue beside it
            table.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.work / "tables" / "cscnn" / "catalog.parquet", table / "catalog.parquet")
        elif not (table / "catalog.parquet").is_file():
            export_table(model, world, table)
        arms[variant] = f"local:{model}:{table}"

    state = State.from_env(args.work / "state")
    results = {}
    for baseline in ("no_image", "cnn"):
        specs = [ArmSpec(baseline, arms[baseline]), ArmSpec("cscnn", arms["cscnn"])]
        out = args.work / f"{baseline}-vs-cscnn"
        result = simulate(world, args.day, specs, [1, 1], cfg, out, state, args.profile, title=f"{baseline} vs cscnn")
        print((out / "report.md").read_text())
        summary = json.loads((out / "summary.json").read_text())
        print("throughput:", json.dumps(summary["throughput"]))
        results[f"{baseline}_vs_cscnn"] = summary | {"validation_ok": result.validation_ok}
    record = {
        "command": "python benchmarks/online_ab.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "config": {"online": cfg.online.__dict__, "train_until": args.train_until, "day": args.day},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"saved -> {args.out}")


if __name__ == "__main__":
    main()
