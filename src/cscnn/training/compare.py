"""The paper's comparison on our world: every variant on the same split and seeds, one table."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import numpy as np
import torch
import yaml

from cscnn.config import Config
from cscnn.data.io import World
from cscnn.errors import CSCNNError
from cscnn.files import atomic_write_text, write_json
from cscnn.training.scoring import evaluate_days
from cscnn.training.train import prepare, select_device, train
from cscnn.variants import get_variant


def run_comparison(world: World, cfg: Config, variants: list[str], seeds: list[int], progress: bool) -> list[dict]:
    """Train and test each (variant, seed); returns one row of test metrics per run."""
    if not variants or not seeds:
        raise CSCNNError("compare needs at least one variant and one seed")
    needs_images = any(get_variant(v).uses_images for v in variants)
    prepared = prepare(world, cfg, images=needs_images)  # the same split, vocabularies and image cache for every run
    rows = []
    for variant in variants:
        for seed in seeds:
            run_cfg = dataclasses.replace(
                cfg,
                model=dataclasses.replace(cfg.model, variant=variant),
                train=dataclasses.replace(cfg.train, seed=seed),
            )
            result = train(world, run_cfg, out=None, progress=progress, prepared=prepared)
            device = select_device(run_cfg.train.device)
            bank = prepared.bank if get_variant(variant).uses_images else None
            split, chunk_rows = prepared.split, run_cfg.train.chunk_rows
            metrics = evaluate_days(result.model, world, split.test, prepared.encoder, bank, device, chunk_rows)
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "train_seconds": result.wall_seconds,
                    "best_epoch": result.best_epoch,
                    **metrics,
                }
            )
            print(
                f"{variant:14s} seed={seed} test_auc={metrics['auc']:.4f} "
                f"cold_auc={metrics['cold_start_auc'] or float('nan'):.4f} ({result.wall_seconds:.0f}s)"
            )
    return rows


def _mean_std(values: list[float | None], signed: bool = False) -> str:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(arr):
        return "n/a"
    mean = f"{arr.mean():+.4f}" if signed else f"{arr.mean():.4f}"
    return f"{mean} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.4f}"


PAIRED_BASELINES = ("no_image", "cnn")  # names in cscnn.variants: the paper's two reference points


def _paired_section(by_variant: dict[str, list[dict]]) -> list[str]:
    """Differences in test AUC against the baselines, paired by seed.

    Runs with the same seed share the data order and most of the initialisation, so much of the seed-to-seed
    spread is common to all variants; the paired difference shows what is left.
    """
    baselines = [b for b in PAIRED_BASELINES if b in by_variant]
    if not baselines:
        return []
    lines = [
        "",
        "## Test AUC minus baseline, paired by seed",
        "",
        "Mean ± sample std of the per-seed difference, and in how many seeds the variant was ahead.",
        "",
        "| variant | " + " | ".join(f"vs {b}" for b in baselines) + " |",
        "|---|" + "---|" * len(baselines),
    ]
    for variant, runs in by_variant.items():
        cells = []
        for baseline in baselines:
            base_auc = {r["seed"]: r["auc"] for r in by_variant[baseline]}
            diffs = [r["auc"] - base_auc[r["seed"]] for r in runs if r["seed"] in base_auc]
            if variant == baseline or not diffs:
                cells.append("—")
                continue
            wins = sum(d > 0 for d in diffs)
            cells.append(f"{_mean_std(diffs, signed=True)} ({wins}/{len(diffs)})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def results_markdown(rows: list[dict], command: str, world: World, cfg: Config) -> str:
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    categories = sorted({c for r in rows for c in r["per_category_auc"]})
    by_variant = {v: [r for r in rows if r["variant"] == v] for v in variants}
    test = rows[0]
    lines = [
        "# CSCNN and its baselines on the synthetic world",
        "",
        f"Produced by `{command}` on {platform.machine()} with {torch.get_num_threads()} CPU threads "
        f"(torch {torch.__version__}).",
        f"World: `{world.root}` ({len(world.items)} items, {len(world.users)} users, days {world.days[0]} to "
        f"{world.days[-1]}); test = the last day ({test['n']} impressions, {test['n_cold_start']} of them on "
        f"cold-start items never seen in training). Seeds: {seeds}. Mean ± sample std over seeds.",
        "",
        "| variant | test AUC | logloss | cold-start AUC | mean per-category AUC | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for v, rs in by_variant.items():
        per_cat_means = [np.mean([a for a in r["per_category_auc"].values() if a is not None]) for r in rs]
        lines.append(
            f"| {v} | {_mean_std([r['auc'] for r in rs])} | {_mean_std([r['logloss'] for r in rs])} | "
            f"{_mean_std([r['cold_start_auc'] for r in rs])} | {_mean_std(per_cat_means)} | "
            f"{np.mean([r['train_seconds'] for r in rs]):.0f} |"
        )
    lines += _paired_section(by_variant)
    lines += ["", "## Per-category test AUC (mean over seeds)", ""]
    lines += ["| variant | " + " | ".join(categories) + " |", "|---|" + "---|" * len(categories)]
    for v, rs in by_variant.items():
        cells = []
        for c in categories:
            vals = [r["per_category_auc"].get(c) for r in rs]
            vals = [x for x in vals if x is not None]
            cells.append(f"{np.mean(vals):.4f}" if vals else "n/a")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "Config of every run (variant and seed vary):", "", "```yaml"]
    lines += [yaml.safe_dump({"model": dataclasses.asdict(cfg.model), "train": dataclasses.asdict(cfg.train)}).rstrip()]
    lines += ["```", ""]
    return "\n".join(lines)


def write_results(rows: list[dict], out: Path, command: str, world: World, cfg: Config) -> None:
    atomic_write_text(Path(out), results_markdown(rows, command, world, cfg))
    write_json(Path(out).with_suffix(".json"), {"command": command, "runs": rows})
