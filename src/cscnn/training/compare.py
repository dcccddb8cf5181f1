"""The paper's comparison on our world: every variant on the same split and seeds, resumable, with intervals.

`run_comparison` trains each (variant, seed) and scores the test days; with a runs folder every finished run
is kept there (`cscnn.training.runstore`) and a second call only trains what is missing. `write_results`
turns the runs into the Markdown table and its JSON (`compare_analysis` for the statistics, `compare_report`
for the text). `compare` is the command: runs next to the output, the table rewritten after every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.config import Config
from cscnn.data.io import World
from cscnn.errors import CSCNNError
from cscnn.files import atomic_write_text, write_json
from cscnn.training import runstore
from cscnn.training.compare_analysis import HeldOutRows, analyse
from cscnn.training.compare_report import results_markdown
from cscnn.training.features import split_days
from cscnn.training.metrics import summarize
from cscnn.training.probe import probe
from cscnn.training.scoring import score_days
from cscnn.training.train import Prepared, prepare_for, select_device, train
from cscnn.variants import get_variant

# <world>/truth/probability/<day>.parquet: one float column `probability`, the true click probability of each row
# of impressions/<day>.parquet in the same order (synthetic worlds hold it; real data does not)
TRUTH_FOLDER = "truth/probability"
TRUTH_PROBABILITY = "probability"
DEFAULT_RESAMPLES = 1000


class RunRows(list):
    """One JSON-able row of test metrics per run, variant by variant and seed by seed (a plain list to JSON),
    plus what the statistics need: each run's per-row test scores, and which runs were found on disk."""

    def __init__(self, variants: list[str], seeds: list[int]) -> None:
        super().__init__()
        self.planned = [(v, s) for v in variants for s in seeds]
        self.scores: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self.skipped: list[tuple[str, int]] = []  # found finished in the runs folder
        self.trained: list[tuple[str, int]] = []
        self.fingerprint: dict | None = None  # what every run shares (None without a runs folder)
        self.cache: dict = {}  # bootstrap draws per run and slice, the test rows: computed once per comparison

    def add(self, row: dict, scores: dict[str, np.ndarray]) -> None:
        self.scores[(row["variant"], row["seed"])] = scores
        done = {(r["variant"], r["seed"]): r for r in [*self, row]}
        self[:] = [done[k] for k in self.planned if k in done]


def read_test_rows(world: World, days: list[str], chunk_rows: int) -> HeldOutRows:
    keys, labels = [], []
    for day in days:
        for chunk in world.day_chunks(day, chunk_rows):  # the order `score_days` reads them in
            keys.append(day + "\0" + chunk["request_id"].astype(str))
            labels.append(chunk["click"].to_numpy(dtype=np.int64))
    codes, uniques = pd.factorize(pd.concat(keys, ignore_index=True), sort=False)
    label = np.concatenate(labels)
    truth, note = _read_truth(world, days)
    if truth is not None and len(truth) != len(label):
        raise CSCNNError(f"{note}: {len(truth)} probabilities for {len(label)} test impressions")
    return HeldOutRows(str(world.root), days, codes.astype(np.int64), len(uniques), label, truth, note)


def _read_truth(world: World, days: list[str]) -> tuple[np.ndarray | None, str]:
    folder = world.root / TRUTH_FOLDER
    paths = [folder / f"{day}.parquet" for day in days]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        return None, f"not available for this world (no {missing[0].relative_to(world.root)})"
    parts = []
    for day, path in zip(days, paths, strict=True):
        try:
            values = pd.read_parquet(path, columns=[TRUTH_PROBABILITY])[TRUTH_PROBABILITY].to_numpy(np.float64)
        except Exception as exc:  # pyarrow raises many types for a corrupt file or a missing column
            raise CSCNNError(f"{path}: cannot read the column '{TRUTH_PROBABILITY}' ({exc})") from exc
        if len(values) != world.day_rows(day) or not np.all((values >= 0) & (values <= 1)):
            raise CSCNNError(
                f"{path}: expected one probability in [0, 1] per row of impressions/{day}.parquet "
                f"({world.day_rows(day)} rows), found {len(values)} values"
            )
        parts.append(values)
    return np.concatenate(parts), f"{TRUTH_FOLDER}/<day>.parquet"


def run_comparison(
    world: World,
    cfg: Config,
    variants: list[str],
    seeds: list[int],
    progress: bool,
    runs_dir: Path | None = None,
    on_run: Callable[[RunRows], None] | None = None,
) -> RunRows:
    """Train and test each (variant, seed); returns one row of test metrics per run.

    With `runs_dir`, runs already finished there under the same fingerprint are read instead of trained,
    and each newly finished run is written there before `on_run` is called with the rows so far.
    """
    if not variants or not seeds:
        raise CSCNNError("compare needs at least one variant and one seed")
    variants, seeds = list(dict.fromkeys(variants)), list(dict.fromkeys(seeds))
    rows = RunRows(variants, seeds)
    device = select_device(cfg.train.device)
    shared = runstore.shared_fingerprint(world, cfg, device) if runs_dir is not None else None
    rows.fingerprint = shared
    missing = []
    for variant, seed in rows.planned:
        found = runstore.load_run(runs_dir, runstore.run_fingerprint(shared, variant, seed)) if shared else None
        if found is None:
            missing.append((variant, seed))
            continue
        key = runstore.run_key(runstore.run_fingerprint(shared, variant, seed))
        rows.add({**found[0], "run": runstore.run_stem(variant, seed, key) + ".json"}, found[1])
        rows.skipped.append((variant, seed))
        print(f"{variant:14s} seed={seed} finished run found in {runs_dir}, skipped (test_auc={found[0]['auc']:.4f})")
    if runs_dir is not None:
        print(f"{len(rows.skipped)} of {len(rows.planned)} runs already finished; training {len(missing)}")
    prepared = None
    missing.sort(key=lambda run: (seeds.index(run[1]), variants.index(run[0])))  # a partial table has every variant
    for variant, seed in missing:
        if shared is not None:
            stale = runstore.stale_differences(runs_dir, runstore.run_fingerprint(shared, variant, seed))
            if stale:
                print(f"{variant:14s} seed={seed} stored runs made with other settings ignored ({', '.join(stale)})")
        if prepared is None:  # the same split, vocabularies and image cache for every run
            prepared = prepare_for(world, cfg, [v for v, _ in missing])
        row, scores = _train_one(world, cfg, prepared, variant, seed, progress)
        if shared is not None:
            record = runstore.save_run(runs_dir, runstore.run_fingerprint(shared, variant, seed), row, scores)
            row["run"] = record.name
        rows.add(row, scores)
        rows.trained.append((variant, seed))
        if on_run is not None:
            on_run(rows)
    return rows


def _train_one(
    world: World, cfg: Config, prepared: Prepared, variant: str, seed: int, progress: bool
) -> tuple[dict, dict[str, np.ndarray]]:
    run_cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, variant=variant),
        train=dataclasses.replace(cfg.train, seed=seed),
    )
    result = train(world, run_cfg, out=None, progress=progress, prepared=prepared)
    device = select_device(run_cfg.train.device)
    bank = prepared.source_for(get_variant(variant))
    scores = score_days(
        result.model, world, prepared.split.test, prepared.encoder, bank, device, run_cfg.train.chunk_rows
    )
    metrics = summarize(scores["label"], scores["prob"], scores["category"], scores["cold"])
    row = {"variant": variant, "seed": seed, "train_seconds": result.wall_seconds, "best_epoch": result.best_epoch}
    row.update(metrics, val_auc=result.card["val_auc"])
    row["probe"] = probe(result.model, bank, world, prepared.encoder, device) if bank is not None else None
    print(
        f"{variant:14s} seed={seed} test_auc={metrics['auc']:.4f} "
        f"cold_auc={metrics['cold_start_auc'] or float('nan'):.4f} ({result.wall_seconds:.0f}s)"
    )
    return row, scores


def held_out_rows(rows: RunRows, world: World, cfg: Config) -> HeldOutRows:
    key = ("test_rows", str(world.root), cfg.train.val_days, cfg.train.test_days, cfg.train.window_days)
    if key not in rows.cache:
        split = split_days(world.days, cfg.train.val_days, cfg.train.test_days, cfg.train.window_days)
        rows.cache[key] = read_test_rows(world, split.test, cfg.train.chunk_rows)
    return rows.cache[key]


def write_results(
    rows: RunRows,
    out: Path,
    command: str,
    world: World,
    cfg: Config,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
) -> dict:
    """Write the Markdown table to `out` and the raw numbers to `out` with .json; returns the analysis."""
    if not isinstance(rows, RunRows) or not rows.scores:
        raise CSCNNError("write_results needs the rows of run_comparison (they carry the runs' test predictions)")
    analysis = analyse(rows, rows.scores, held_out_rows(rows, world, cfg), resamples, bootstrap_seed, rows.cache)
    atomic_write_text(Path(out), results_markdown(rows, analysis, command, world, cfg))
    record = {"command": command, "runs": rows, "analysis": analysis, "fingerprint": rows.fingerprint}
    write_json(Path(out).with_suffix(".json"), record)
    return analysis


def runs_folder(out: Path) -> Path:
    """Where `compare` keeps the finished runs for the table `out`: `<out stem>.runs/` next to it."""
    return Path(out).with_name(Path(out).stem + ".runs")


def compare(
    world: World,
    cfg: Config,
    variants: list[str],
    seeds: list[int],
    out: Path,
    command: str,
    progress: bool = False,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
) -> RunRows:
    """`cscnn compare`: resume from `<out stem>.runs/`, rewrite the table after every finished run."""

    def rewrite(rows: RunRows) -> None:
        write_results(rows, out, command, world, cfg, resamples, bootstrap_seed)

    rows = run_comparison(world, cfg, variants, seeds, progress, runs_folder(out), on_run=rewrite)
    rewrite(rows)
    return rows
