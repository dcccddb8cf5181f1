"""Which training recipe raises the image path toward its ceiling: every lever setting applied identically to
every variant, chosen by *validation* AUC (the test day is only reported), with the ceiling variant
(`attributes`) and the probe alongside (docs/model.md, "Raising the image path toward its ceiling").

Each setting is one `cscnn compare` (resumable, its runs under docs/results/levers/<world>/<setting>.runs/);
the summary `docs/results/levers/<world>.md` (+ .json) of every setting run on that world so far is rewritten
after every setting. Usage (repo root):

    python benchmarks/levers.py --data data/small --profile small --seeds 1 \\
        --settings base,ema,iddrop0.3,cosine,cnnlr0.3,group,epochs16

A setting is `+`-joined parts: a name in PARTS, or iddropX, cnnlrX, cnnwdX, emaX, epochsN, lrX, dimN.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.files import atomic_write_text, write_json
from cscnn.training.compare import compare

PARTS = {
    "base": [],
    "ema": ["train.ema_decay=0.998"],
    "cosine": ["train.lr_schedule=cosine"],
    "group": ["model.conv_norm=group"],
    "he": ["model.conv_init=kaiming"],
}
PREFIXES = {
    "iddrop": "train.item_id_dropout={}",
    "cnnlr": "train.cnn_lr_scale={}",
    "cnnwd": "train.cnn_weight_decay={}",
    "ema": "train.ema_decay={}",
    "epochs": "train.epochs={}",
    "patience": "train.patience={}",
    "lr": "train.lr={}",
    "dim": "model.visual_dim={}",
    "warmup": "train.warmup_steps={}",
}
IMAGE_VARIANTS = ("cnn", "se", "cbam", "cscnn")  # the selection criterion: their mean validation AUC


def overrides_of(setting: str) -> list[str]:
    out: list[str] = []
    for part in setting.split("+"):
        if part in PARTS:
            out += PARTS[part]
            continue
        prefix = next((p for p in sorted(PREFIXES, key=len, reverse=True) if part.startswith(p)), None)
        if prefix is None or not part[len(prefix) :]:
            raise SystemExit(f"unknown setting part {part!r}: use {list(PARTS)} or a prefix of {list(PREFIXES)}")
        out.append(PREFIXES[prefix].format(part[len(prefix) :]))
    return out


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarise(setting: str, record: dict) -> dict:
    runs, slices = record["runs"], record["analysis"]["slices"]
    by_variant = {}
    for variant in record["analysis"]["variants"]:
        mine = [r for r in runs if r["variant"] == variant]
        probes = [r["probe"] for r in mine if r.get("probe")]
        by_variant[variant] = {
            "seeds": len(mine),
            "val_auc": _mean([r.get("val_auc") for r in mine]),
            "test_auc": _mean([r["auc"] for r in mine]),
            "cold_auc": _mean([r["cold_start_auc"] for r in mine]),
            "share": slices["all"].get("visual_share", {}).get(variant, {}).get("estimate"),
            "cold_share": slices["cold"].get("visual_share", {}).get(variant, {}).get("estimate"),
            "probe_attributes": _mean([p["mean_attribute_r2"] for p in probes]),
            "probe_visual": _mean([p["visual_r2"] for p in probes]),
            "epochs": _mean([r["best_epoch"] for r in mine]),
        }
    image = [by_variant[v]["val_auc"] for v in IMAGE_VARIANTS if v in by_variant]
    return {"setting": setting, "criterion": _mean(image), "variants": by_variant}


def _cell(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | selection: mean val AUC of image variants | variant | val AUC | test AUC | cold-start AUC "
        "| visual share | cold share | of ceiling | cold of ceiling | probe R² attr; visual | best epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -(r["criterion"] or 0)):
        ceiling = row["variants"].get("attributes", {})
        for variant, v in row["variants"].items():
            of = cold_of = None
            if (ceiling.get("share") or 0) > 0 and v["share"] is not None:
                of = v["share"] / ceiling["share"]
            if (ceiling.get("cold_share") or 0) > 0 and v["cold_share"] is not None:
                cold_of = v["cold_share"] / ceiling["cold_share"]
            lines.append(
                f"| {row['setting']} | {_cell(row['criterion'])} | {variant} | {_cell(v['val_auc'])} | "
                f"{_cell(v['test_auc'])} | {_cell(v['cold_auc'])} | {_cell(v['share'], 2)} | "
                f"{_cell(v['cold_share'], 2)} | {_cell(of, 2)} | {_cell(cold_of, 2)} | "
                f"{_cell(v['probe_attributes'], 2)}; {_cell(v['probe_visual'], 2)} | {_cell(v['epochs'], 1)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/small"))
    parser.add_argument("--profile", default="small")
    parser.add_argument("--settings", default="base,ema,iddrop0.3,cosine,cnnlr0.3,group,epochs16")
    parser.add_argument("--variants", default="no_image,attributes,cnn,cscnn")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--out", type=Path, default=Path("docs/results/levers"))
    args = parser.parse_args()
    world = open_world(args.data)
    name = args.data.name
    summary_path = args.out / f"{name}.md"
    for setting in args.settings.split(","):
        cfg = load_config(args.profile, overrides=[*args.overrides, *overrides_of(setting)])
        out = args.out / name / f"{setting}.md"
        command = f"python benchmarks/levers.py {' '.join(sys.argv[1:])}  (setting {setting})"
        compare(world, cfg, args.variants.split(","), list(range(args.seeds)), out, command, resamples=200)
        rows = [  # every setting run on this world so far, this call's and earlier calls'
            summarise(path.stem, json.loads(path.read_text())) for path in sorted((args.out / name).glob("*.json"))
        ]
        header = (
            f"# Training levers on `{name}` (profile {args.profile})\n\n"
            f"`python benchmarks/levers.py {' '.join(sys.argv[1:])}` on {platform.machine()}, {os.cpu_count()} "
            f"cores, torch {torch.__version__}. Sorted by the selection criterion (validation only); each "
            f"setting's full table: `{args.out / name}/<setting>.md`.\n\n"
        )
        atomic_write_text(summary_path, header + table(rows) + "\n")
        write_json(summary_path.with_suffix(".json"), rows)
        print(f"== {setting}: criterion {_cell(next(r for r in rows if r['setting'] == setting)['criterion'])}")


if __name__ == "__main__":
    main()
