"""The Markdown of `cscnn compare`: the runs' test metrics and the analysis of `compare_analysis`, as tables."""

from __future__ import annotations

import dataclasses
import platform

import numpy as np
import torch
import yaml

from cscnn.config import Config
from cscnn.data.io import World
from cscnn.training.compare_analysis import ALL, CATEGORY, COLD, NO_IMAGE
from cscnn.training.stats import EQUIVALENCE_MARGIN, POWER, seed_interval
from cscnn.training.train import select_device


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _ci(interval: list[float] | None) -> str:
    return "n/a" if interval is None else f"[{_num(interval[0], True)}, {_num(interval[1], True)}]"


def _mean_ci(values: list[float | None]) -> str:
    """Mean ± the half-width of its 95% Student-t interval over seeds (one seed: the value alone)."""
    kept = [v for v in values if v is not None and np.isfinite(v)]
    if not kept:
        return "n/a"
    interval = seed_interval(kept)
    return _num(float(np.mean(kept))) + (f" ± {interval.high - interval.estimate:.4f}" if interval else "")


def _summary(part: dict) -> dict[str, str]:
    return {v: _mean_ci(list(s["per_seed"].values())) for v, s in part["variants"].items()}


def intervals_paragraph(analysis: dict) -> list[str]:
    boot = analysis["bootstrap"]
    over_requests = (
        f"**Over requests**, a paired bootstrap: {boot['resamples']} resamples (bootstrap seed {boot['seed']}) of "
        f"the {boot['n_requests']} test requests, drawn with replacement (a request keeps all its impressions); in "
        "each, both variants' AUCs are recomputed on the same resampled rows and averaged over their seeds, and "
        "the 2.5th and 97.5th percentiles of the difference bound the interval: the noise of a finite test set."
        if boot["resamples"]
        else "The bootstrap over requests was switched off (`--bootstrap 0`): verdicts rest on the seeds alone."
    )
    return [
        "## How the intervals are computed",
        "",
        "Every interval is a 95% interval of a difference in test AUC, paired. **Over seeds**: the per-seed "
        "difference (runs with the same seed share the data order), its mean ± t(0.975, n-1) · s / √n with n "
        "the seeds both variants ran (Student t; at least two seeds): the training's randomness. " + over_requests,
        "A variant is **ahead** when both intervals lie above 0, **behind** when both lie below 0, "
        f"**equivalent** when two one-sided t tests over seeds put the difference within ±{EQUIVALENCE_MARGIN} "
        "(90% interval inside the margin) and the request interval lies inside it too, else **underpowered**: "
        f"then the seeds a paired t test needs to resolve ±{EQUIVALENCE_MARGIN} at {POWER:.0%} power (noncentral "
        "t, from the measured sd of the per-seed differences) are named. Slices (cold-start items, each "
        "category) use the same resamples restricted to their "
        "rows. After an AUC, ± is the half-width of its 95% Student-t interval over seeds. The oracle is the AUC "
        "of the world's true click probability on the same rows, the ceiling; a variant's visual share is "
        "(variant - no_image) / (oracle - no_image), with its bootstrap interval in brackets. The `attributes` "
        "row, where present, is the diagnostic ceiling: the CTR network fed the world's true visual attributes in "
        "place of the image; *of ceiling* is a variant's visual share divided by that row's. *Probe R²*: a ridge "
        "probe from the visual vector to the true attributes (mean over attributes) and to the item's true "
        "visual term (per category), fitted on the items seen in training and scored on the cold-start items "
        "(`cscnn.training.probe`): low R² means the CNN does not see the attribute; high R² with a low share "
        "means the CTR network does not use it.",
        "",
    ]


def _main_table(rows: list[dict], analysis: dict) -> list[str]:
    overall, cold = analysis["slices"][ALL], analysis["slices"][COLD]
    has_share = "visual_share" in overall
    has_ceiling = "ceiling_share" in overall
    has_probe = any(r.get("probe") for r in rows)
    head = "| variant | seeds | test AUC | seed sd | logloss | cold-start AUC | mean per-category AUC |"
    head += " visual share | cold-start visual share |" if has_share else ""
    head += " of ceiling | cold-start of ceiling |" if has_ceiling else ""
    head += " probe R² (attributes; visual term) |" if has_probe else ""
    lines = [head + " train time (s) |", "|---" * (head.count("|")) + "|"]
    categories = [k for k in analysis["slices"] if k.startswith(CATEGORY)]
    for v in analysis["variants"]:
        runs = [r for r in rows if r["variant"] == v]
        per_cat = [_mean_over_categories(analysis, categories, v, r["seed"]) for r in runs]
        cells = [
            str(len(runs)),
            _mean_ci([r["auc"] for r in runs]),
            _sd([r["auc"] for r in runs]),
            _mean_ci([r["logloss"] for r in runs]),
            _mean_ci([r["cold_start_auc"] for r in runs]),
            _mean_ci(per_cat),
        ]
        if has_share:
            cells += [_share(overall, v), _share(cold, v)]
        if has_ceiling:
            cells += [_of_ceiling(overall, v), _of_ceiling(cold, v)]
        if has_probe:
            cells.append(_probe(runs))
        cells.append(f"{np.mean([r['train_seconds'] for r in runs]):.0f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if analysis["oracle"]["available"]:
        oracle = [_num(overall["oracle_auc"]), "—", "—", _num(cold["oracle_auc"])]
        oracle_cats = [analysis["slices"][c]["oracle_auc"] for c in categories]
        oracle.append(_num(float(np.mean(oracle_cats))) if None not in oracle_cats else "n/a")
        tail = (" | 1 | 1" if has_share else "") + (" | — | —" if has_ceiling else "") + (" | —" if has_probe else "")
        lines.append("| oracle | — | " + " | ".join(oracle) + tail + " | — |")
    return lines


def _sd(values: list[float | None]) -> str:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return f"{np.std(kept, ddof=1):.4f}" if len(kept) > 1 else "n/a"


def _of_ceiling(part: dict, variant: str) -> str:
    shares = part.get("ceiling_share", {})
    if variant not in shares:
        return "0 (reference)" if variant == NO_IMAGE else "n/a"
    return "n/a" if shares[variant] is None else f"{shares[variant]:.2f}"


def _probe(runs: list[dict]) -> str:
    probes = [r["probe"] for r in runs if r.get("probe")]
    if not probes:
        return "—"
    attributes = np.mean([p["mean_attribute_r2"] for p in probes])
    return f"{attributes:.2f}; {np.mean([p['visual_r2'] for p in probes]):.2f}"


def _mean_over_categories(analysis: dict, categories: list[str], variant: str, seed: int) -> float | None:
    values = [analysis["slices"][c]["variants"][variant]["per_seed"][str(seed)] for c in categories]
    return float(np.mean(values)) if values and None not in values else None


def _share(part: dict, variant: str) -> str:
    if variant not in part.get("visual_share", {}):
        return "0 (reference)"
    share = part["visual_share"][variant]
    if share["estimate"] is None:
        return "n/a"
    ci = share["bootstrap_ci"]
    return f"{share['estimate']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _pairs_table(pairs: list[dict], first: str) -> list[str]:
    lines = [
        f"| {first} | vs | difference (seeds ahead) | sd over seeds | 95% CI over seeds | 95% CI over requests "
        "| verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        label = p["variant"] if first == "variant" else p["category"]
        ref = p["reference"] if p["role"] == p["reference"] else f"{p['reference']} ({p['role']})"
        diff = f"{_num(p['difference'], True)} ({p['seeds_ahead']}/{len(p['per_seed'])})"
        judged = p["verdict"] + (f" (needs {p['seeds_needed']} seeds)" if p.get("seeds_needed") else "")
        sd = _num(p.get("sd"))
        lines.append(f"| {label} | {ref} | {diff} | {sd} | {_ci(p['seed_ci'])} | {_ci(p['bootstrap_ci'])} | {judged} |")
    return lines


def _category_sections(analysis: dict) -> list[str]:
    categories = [k for k in analysis["slices"] if k.startswith(CATEGORY)]
    names = [c.removeprefix(CATEGORY) for c in categories]
    lines = ["## Per-category test AUC", "", "Mean ± 95% CI half-width over seeds.", ""]
    lines += ["| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for v in analysis["variants"]:
        cells = [_summary(analysis["slices"][c])[v] for c in categories]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if analysis["oracle"]["available"]:
        lines.append("| oracle | " + " | ".join(_num(analysis["slices"][c]["oracle_auc"]) for c in categories) + " |")
    lines.append("| impressions (clicks) | " + " | ".join(
        f"{analysis['slices'][c]['n']} ({analysis['slices'][c]['clicks']})" for c in categories) + " |")  # fmt: skip
    pairs = [{**p, "category": c.removeprefix(CATEGORY)} for c in categories for p in analysis["slices"][c]["pairs"]]
    if pairs:
        pairs.sort(key=lambda p: (p["reference"], p["category"]))
        lines += ["", f"## Per-category differences of {pairs[0]['variant']}", ""]
        lines += _pairs_table(pairs, "category")
    return lines


def results_markdown(rows: list[dict], analysis: dict, command: str, world: World, cfg: Config) -> str:
    overall, cold = analysis["slices"][ALL], analysis["slices"][COLD]
    seeds = sorted({r["seed"] for r in rows})
    planned = getattr(rows, "planned", None)
    partial = (
        f" **Partial: {len(rows)} of {len(planned)} runs finished** (the table is rewritten after every run)."
        if planned and len(rows) < len(planned)
        else ""
    )
    device = select_device(cfg.train.device).type
    lines = [
        f"# CSCNN and its baselines on the world `{world.root.name}`",
        "",
        f"Produced by `{command}` on {platform.machine()} ({device}) with {torch.get_num_threads()} CPU threads "
        f"(torch {torch.__version__}).",
        f"World: `{world.root}` ({len(world.items)} items, {len(world.users)} users, days {world.days[0]} to "
        f"{world.days[-1]}); test = {', '.join(analysis['test_days'])} ({overall['n']} impressions, "
        f"{overall['clicks']} clicks, {analysis['bootstrap']['n_requests']} requests; {cold['n']} impressions on "
        f"cold-start items never seen in training). Seeds: {seeds}.{partial}",
        "",
    ]
    lines += intervals_paragraph(analysis)
    lines += ["## Test AUC", "", *_main_table(rows, analysis), ""]
    if not analysis["oracle"]["available"]:
        lines += [f"oracle: {analysis['oracle']['source']}", ""]
    if overall["pairs"]:
        lines += ["## Test AUC minus reference, paired by seed and by request", ""]
        lines += _pairs_table(overall["pairs"], "variant")
        lines += ["", "## Cold-start items: test AUC minus reference", ""]
        lines += _pairs_table(cold["pairs"], "variant")
        lines.append("")
    lines += [*_category_sections(analysis), ""]
    lines += ["Config of every run (variant and seed vary):", "", "```yaml"]
    lines += [yaml.safe_dump({"model": dataclasses.asdict(cfg.model), "train": dataclasses.asdict(cfg.train)}).rstrip()]
    lines += ["```", ""]
    return "\n".join(lines)
