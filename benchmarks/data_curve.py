"""Does CSCNN's edge over category-blind CNNs grow with data? The capacity world at x1, x2, x4, x8 items per
category, with clicks per item held fixed (items and impressions scaled together), CSCNN against the best
category-blind variant (cnn, se, cbam; the best chosen by *validation* AUC at each scale), with the paired
Student-t interval over seeds (docs/results.md, "Does the edge grow with data?").

Resumable: each scale is one `cscnn compare` (runs under docs/results/data_curve/x<k>.runs/); the summary
(docs/results/data_curve.md + .json) and the plot (docs/pictures/data_curve.png) are rewritten after every
scale. Usage (repo root, venv active):

    python benchmarks/data_curve.py --scales 1,2,4,8 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.files import atomic_write_text, write_json
from cscnn.training.compare import compare
from cscnn.training.plots import pyplot
from cscnn.training.stats import seed_interval

BLIND = ("cnn", "se", "cbam")
SCALED = ("n_items", "new_items_per_day", "impressions_per_day")  # scaled together: clicks per item stay


def scale_overrides(profile: str, k: int) -> list[str]:
    world = load_config(profile).world
    return [f"world.{name}={getattr(world, name) * k}" for name in SCALED]


def edge(record: dict) -> dict:
    """CSCNN minus the best category-blind variant (by mean validation AUC), per seed, with its interval."""
    runs = record["runs"]

    def by_seed(variant: str, key: str) -> dict[int, float]:
        return {r["seed"]: r[key] for r in runs if r["variant"] == variant and r.get(key) is not None}

    blind = [v for v in BLIND if by_seed(v, "val_auc")]
    best = max(blind, key=lambda v: np.mean(list(by_seed(v, "val_auc").values())))
    mine, theirs = by_seed("cscnn", "auc"), by_seed(best, "auc")
    diffs = [mine[s] - theirs[s] for s in sorted(mine) if s in theirs]
    ci = seed_interval(diffs)
    return {
        "best_blind": best,
        "seeds": len(diffs),
        "difference": float(np.mean(diffs)) if diffs else None,
        "seed_ci": [ci.low, ci.high] if ci else None,
        "per_seed": diffs,
    }


def plot(rows: list[dict], out: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ks = [r["scale"] for r in rows if r["difference"] is not None]
    mid = [r["difference"] for r in rows if r["difference"] is not None]
    low = [r["seed_ci"][0] if r["seed_ci"] else r["difference"] for r in rows if r["difference"] is not None]
    high = [r["seed_ci"][1] if r["seed_ci"] else r["difference"] for r in rows if r["difference"] is not None]
    ax.errorbar(ks, mid, yerr=[np.subtract(mid, low), np.subtract(high, mid)], marker="o", capsize=4)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [f"x{k}" for k in ks])
    ax.set(xlabel="items per category (clicks per item fixed)", ylabel="CSCNN - best category-blind, test AUC",
           title="Capacity world: the edge against data (95% CI over seeds)")  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="capacity")
    parser.add_argument("--scales", default="1,2,4,8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default="cnn,se,cbam,cscnn")
    parser.add_argument("--data", type=Path, default=Path("data"), help="where the scaled worlds are generated")
    parser.add_argument("--out", type=Path, default=Path("docs/results/data_curve"))
    parser.add_argument("--picture", type=Path, default=Path("docs/pictures/data_curve.png"))
    args = parser.parse_args()
    rows = []
    for k in (int(s) for s in args.scales.split(",")):
        overrides = scale_overrides(args.profile, k)
        cfg = load_config(args.profile, overrides=overrides)
        folder = args.data / f"{args.profile}-x{k}"
        if not folder.exists():
            generate_world(cfg.world, folder)
        out = args.out / f"x{k}.md"
        command = f"python benchmarks/data_curve.py {' '.join(sys.argv[1:])}  (scale x{k}: {' '.join(overrides)})"
        compare(open_world(folder), cfg, args.variants.split(","), list(range(args.seeds)), out, command,
                resamples=200)  # fmt: skip
        rows.append({"scale": k, "overrides": overrides, **edge(json.loads(out.with_suffix(".json").read_text()))})
        lines = [
            f"# CSCNN's edge against data on the {args.profile} world",
            "",
            f"`python benchmarks/data_curve.py {' '.join(sys.argv[1:])}`; each scale's table: `{args.out}/x<k>.md`.",
            "",
            "| scale | world | best category-blind (by val AUC) | CSCNN - it | 95% CI over seeds | seeds |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            ci = "n/a" if not r["seed_ci"] else f"[{r['seed_ci'][0]:+.4f}, {r['seed_ci'][1]:+.4f}]"
            lines.append(f"| x{r['scale']} | {', '.join(r['overrides'])} | {r['best_blind']} | "
                         f"{r['difference']:+.4f} | {ci} | {r['seeds']} |")  # fmt: skip
        summary = args.out.with_suffix(".md")
        atomic_write_text(summary, "\n".join(lines) + "\n")
        write_json(summary.with_suffix(".json"), rows)
        plot(rows, args.picture)
        print(f"== x{k}: {rows[-1]['difference']:+.4f} vs {rows[-1]['best_blind']}", flush=True)


if __name__ == "__main__":
    main()
