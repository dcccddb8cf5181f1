"""Which attention form and initialisation to train with: every setting applied identically to SE, CBAM and
CSCNN (and the plain CNN where the setting touches it), chosen by *validation* AUC (the test day is only
reported). Also records how much signal the CNN passes on (`cscnn.training.diagnostics.signal_scale`) at
initialisation and after every epoch.

Resumable: each (setting, variant, seed) run is saved as one JSON file under --runs and skipped when the
command is run again; the summary (Markdown + JSON) is rewritten after every run. Usage (repo root, venv):

    python benchmarks/attention_forms.py --data data/small --profile small --seeds 2 \\
        --settings paper,scaled,residual,paper+he,scaled+he,residual+he --variants cnn,se,cbam,cscnn

Setting names are `+`-joined parts from PARTS (e.g. `scaled+he+prior0.1+warmup200`).
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
from cscnn.files import atomic_write_text, write_json
from cscnn.training.scoring import evaluate_days
from cscnn.training.train import prepare, select_device, train

PARTS = {
    "paper": ["model.attention_gate=sigmoid"],
    "scaled": ["model.attention_gate=scaled"],
    "residual": ["model.attention_gate=residual"],
    "he": ["model.conv_init=kaiming"],
    "default_init": ["model.conv_init=default"],
}


def overrides_of(setting: str) -> list[str]:
    out = []
    for part in setting.split("+"):
        if part in PARTS:
            out += PARTS[part]
        elif part.startswith("prior"):
            out.append(f"model.prior_init_std={float(part[5:])}")
        elif part.startswith("warmup"):
            out.append(f"train.warmup_steps={int(part[6:])}")
        else:
            raise SystemExit(f"unknown setting part {part!r}: use {list(PARTS)}, priorX, warmupN")
    return out


def touches(setting: str, variant: str) -> bool:
    """Gate forms do not exist in the plain CNN (it runs for the `paper` settings only), category priors only
    in CSCNN: a run that the setting would not change is not repeated."""
    parts = setting.split("+")
    if any(p.startswith("prior") for p in parts) and variant != "cscnn":
        return False
    return variant != "cnn" or not any(p in ("scaled", "residual") for p in parts)


def one_run(world, base_overrides, profile, setting, variant, seed, prepared) -> dict:
    cfg = load_config(profile, overrides=[*base_overrides, *overrides_of(setting), f"model.variant={variant}",
                                          f"train.seed={seed}"])  # fmt: skip
    result = train(world, cfg, out=None, progress=False, prepared=prepared)
    device = select_device(cfg.train.device)
    test = evaluate_days(result.model, world, prepared.split.test, prepared.encoder, prepared.bank, device,
                         cfg.train.chunk_rows)  # fmt: skip
    return {
        "setting": setting, "variant": variant, "seed": seed, "val_auc": result.card["val_auc"],
        "test_auc": test["auc"], "test_cold_auc": test["cold_start_auc"], "best_epoch": result.best_epoch,
        "train_seconds": result.wall_seconds, "signal_at_start": result.signal_at_start,
        "history": result.history, "model": dataclasses.asdict(cfg.model), "train": dataclasses.asdict(cfg.train),
    }  # fmt: skip


def summary(runs: list[dict]) -> str:
    keys = sorted({(r["setting"], r["variant"]) for r in runs}, key=lambda k: (k[1], k[0]))
    lines = [
        "| variant | setting | seeds | val AUC | test AUC | last layer mean abs, start -> best epoch | "
        "visual spread / bias at best epoch | epochs | s/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for setting, variant in keys:
        rs = [r for r in runs if r["setting"] == setting and r["variant"] == variant]
        best = [r["history"][r["best_epoch"] - 1]["signal"] for r in rs]
        start = [r["signal_at_start"] for r in rs]
        lines.append(
            f"| {variant} | {setting} | {len(rs)} | {np.mean([r['val_auc'] for r in rs]):.4f} | "
            f"{np.mean([r['test_auc'] for r in rs]):.4f} | "
            f"{np.mean([s['last_layer'] for s in start]):.2e} -> {np.mean([s['last_layer'] for s in best]):.2e} | "
            f"{np.mean([s['visual_spread'] for s in best]):.3f} / {np.mean([s['visual_bias'] for s in best]):.3f} | "
            f"{np.mean([r['best_epoch'] for r in rs]):.1f} | {np.mean([r['train_seconds'] for r in rs]):.0f} |"
        )
    by_setting: dict[str, list[float]] = {}
    for r in runs:
        if r["variant"] in ("se", "cbam", "cscnn"):
            by_setting.setdefault(r["setting"], []).append(r["val_auc"])
    lines += ["", "Mean validation AUC of SE, CBAM and CSCNN together, per setting (the selection criterion):", ""]
    for setting, values in sorted(by_setting.items(), key=lambda kv: -np.mean(kv[1])):
        lines.append(f"- {setting}: {np.mean(values):.4f} ({len(values)} runs)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/small"))
    parser.add_argument("--profile", default="small")
    parser.add_argument("--settings", default="paper,scaled,residual,paper+he,scaled+he,residual+he")
    parser.add_argument("--variants", default="cnn,se,cbam,cscnn")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/results/attention_forms"))
    args = parser.parse_args()
    base = load_config(args.profile, overrides=args.overrides)
    torch.set_num_threads(base.train.num_threads or os.cpu_count() or 1)
    if not args.data.exists():  # an existing world is used as it is: every run of a comparison sees the same data
        generate_world(base.world, args.data)
    world = open_world(args.data)
    prepared = prepare(world, base)
    args.runs.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seeds):
        for setting in args.settings.split(","):
            for variant in args.variants.split(","):
                path = args.runs / f"{setting}__{variant}__s{seed}.json"
                if not touches(setting, variant) or path.exists():
                    continue
                started = time.perf_counter()
                row = one_run(world, args.overrides, args.profile, setting, variant, seed, prepared)
                write_json(path, row)
                print(f"{setting:28s} {variant:6s} seed={seed} val={row['val_auc']:.4f} test={row['test_auc']:.4f}"
                      f" ({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip
                runs = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*.json"))]
                header = (
                    f"# Attention forms on `{args.data}` (profile {args.profile})\n\n"
                    f"`python benchmarks/attention_forms.py {' '.join(sys.argv[1:])}` on {platform.machine()}, "
                    f"{os.cpu_count()} cores, torch {torch.__version__}.\n\n"
                )
                atomic_write_text(args.runs.with_suffix(".md"), header + summary(runs) + "\n")


if __name__ == "__main__":
    main()
