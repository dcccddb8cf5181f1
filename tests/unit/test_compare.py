"""`cscnn compare`: the intervals and the verdict on constructed data, and the resumable runs on the tiny world."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cscnn.data.io import open_world
from cscnn.errors import CSCNNError
from cscnn.training.compare import compare, run_comparison, runs_folder, write_results
from cscnn.training.compare_analysis import HeldOutRows, analyse
from cscnn.training.metrics import auc
from cscnn.training.stats import (
    AHEAD,
    BEHIND,
    EQUIVALENT,
    UNDECIDED,
    UNDERPOWERED,
    Interval,
    bootstrap_aucs,
    decide,
    equivalent,
    paired_power,
    percentile_interval,
    request_counts,
    seed_interval,
    seeds_needed,
    t_quantile,
    verdict,
    weighted_aucs,
)

# --- the statistics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)])
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_seed_interval_of_fixed_differences_by_hand() -> None:
    # mean 0.025; sample sd = sqrt((0.015² + 0.005² + 0.005² + 0.015²) / 3); t(0.975, 3) = 3.182446
    ci = seed_interval([0.01, 0.02, 0.03, 0.04])
    half = 3.182446 * math.sqrt(0.0005 / 3) / 2
    assert ci.estimate == pytest.approx(0.025)
    assert (ci.low, ci.high) == (pytest.approx(0.025 - half, abs=1e-6), pytest.approx(0.025 + half, abs=1e-6))
    assert seed_interval([0.01]) is None  # one seed: no interval
    same = seed_interval([0.02, 0.02, 0.02])
    assert (same.low, same.high) == (pytest.approx(0.02), pytest.approx(0.02))


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([Interval(0.02, 0.01, 0.03), Interval(0.02, 0.005, 0.04)], AHEAD),
        ([Interval(-0.02, -0.03, -0.01), Interval(-0.02, -0.04, -0.001)], BEHIND),
        ([Interval(0.02, 0.01, 0.03), Interval(0.02, -0.001, 0.04)], UNDECIDED),  # one interval touches 0
        ([Interval(0.02, 0.01, 0.03), Interval(-0.02, -0.03, -0.01)], UNDECIDED),  # the intervals disagree
        ([Interval(0.0, 0.0, 0.0), Interval(0.0, 0.0, 0.0)], UNDECIDED),  # zero width at 0
        ([None, Interval(0.02, 0.01, 0.03)], UNDECIDED),  # too few seeds for a seed interval
        ([Interval(0.02, 0.01, 0.03)], AHEAD),  # the bootstrap switched off: the seeds alone
    ],
)
def test_verdict_needs_every_interval_on_the_same_side_of_zero(intervals: list, expected: str) -> None:
    assert verdict(intervals) == expected


@pytest.mark.parametrize(("sd", "expected"), [(0.003, 10), (0.006, 34), (0.0015, 5)])
def test_seeds_needed_matches_the_paired_t_table(sd: float, expected: int) -> None:
    # Cohen's d = 0.003 / sd; a two-sided paired t test at 5 % with 80 % power needs n = 10 for d = 1, 34 for
    # d = 0.5 and 5 for d = 2 (G*Power's table); one seed fewer falls short of 80 %.
    assert seeds_needed(sd, effect=0.003) == expected
    assert paired_power(expected, sd, 0.003) >= 0.8 > paired_power(expected - 1, sd, 0.003)


def test_paired_power_at_no_effect_is_the_test_level() -> None:
    assert paired_power(12, 0.004, 0.0) == pytest.approx(0.05, abs=1e-9)


def test_equivalence_needs_the_90_percent_interval_inside_the_margin() -> None:
    # mean 0.0005, sd 0.001, n 4: the 90 % half-width is t(0.95, 3) * 0.001 / 2 = 0.001177: inside +-0.003
    assert equivalent([0.0015, -0.0005, 0.0015, -0.0005], margin=0.003)
    assert not equivalent([0.0015, -0.0005, 0.0015, -0.0005], margin=0.0015)  # 0.0005 + 0.001177 > 0.0015
    assert not equivalent([0.001], margin=0.003)  # one seed proves nothing
    assert not equivalent([0.004, 0.005, 0.0045], margin=0.003)  # clearly non-zero, outside the margin


def test_decide_names_ahead_equivalent_or_the_seeds_it_needs() -> None:
    up = [0.010, 0.012, 0.011]
    assert decide(up, seed_interval(up), Interval(0.011, 0.005, 0.017)) == (AHEAD, None)
    flat = [0.0005, -0.0005, 0.0, 0.0004, -0.0004]
    assert decide(flat, seed_interval(flat), Interval(0.0, -0.001, 0.001)) == (EQUIVALENT, None)
    # the same seeds, but the test set is too small to bound the difference within the margin
    assert decide(flat, seed_interval(flat), Interval(0.0, -0.004, 0.004))[0] == UNDERPOWERED
    noisy = [0.004, -0.003, 0.006, -0.002]
    verdict_, needed = decide(noisy, seed_interval(noisy), None)
    assert verdict_ == UNDERPOWERED and needed == seeds_needed(float(np.std(noisy, ddof=1)))


def _requests(n_requests: int = 300, per_request: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    request = np.repeat(np.arange(n_requests), per_request)
    return request, (rng.random(len(request)) < 0.3).astype(np.int64)


def test_weighted_auc_is_the_auc_of_the_rows_repeated() -> None:
    _, label = _requests(60, 5)
    scores = np.round(np.random.default_rng(1).random(len(label)) + 0.2 * label, 1)  # many ties
    weights = np.random.default_rng(2).integers(0, 3, size=(4, len(label)))
    for row, value in zip(weights, weighted_aucs(label, scores, weights), strict=True):
        repeated = np.repeat(np.arange(len(label)), row)
        assert value == pytest.approx(auc(label[repeated], scores[repeated]))


def test_bootstrap_of_a_perfect_against_a_random_scorer_is_well_above_zero() -> None:
    request, label = _requests()
    perfect = label + 0.01 * np.random.default_rng(3).random(len(label))
    random = np.random.default_rng(4).random(len(label))
    draws = bootstrap_aucs(label, perfect, request, 300, 400, 0) - bootstrap_aucs(label, random, request, 300, 400, 0)
    ci = percentile_interval(auc(label, perfect) - auc(label, random), draws)
    assert ci.low > 0.4 and ci.high <= 0.6 and ci.low < ci.estimate < ci.high


def test_identical_scorers_give_a_zero_width_interval_and_no_verdict() -> None:
    request, label = _requests()
    scores = np.random.default_rng(5).random(len(label))
    draws = bootstrap_aucs(label, scores, request, 300, 200, 7) - bootstrap_aucs(label, scores, request, 300, 200, 7)
    ci = percentile_interval(0.0, draws)
    assert (ci.low, ci.high) == (0.0, 0.0)
    assert verdict([seed_interval([0.0, 0.0, 0.0]), ci]) == UNDECIDED


def test_a_slice_sees_the_same_resamples_as_the_whole() -> None:
    request, label = _requests()
    scores = np.random.default_rng(6).random(len(label))
    weights = request_counts(0, 60, 300, 1)[:, request]  # the whole's resamples, as weights per row
    part = request < 150
    expected = weighted_aucs(label[part], scores[part], weights[:, part])
    assert np.allclose(bootstrap_aucs(label[part], scores[part], request[part], 300, 60, 1), expected)
    assert not np.allclose(bootstrap_aucs(label[part], scores[part], request[part], 300, 60, 2), expected)


def test_runs_scored_on_other_rows_fail_clearly() -> None:
    request, label = _requests(20, 5)
    run = {"label": label, "prob": np.random.default_rng(0).random(len(label)), "category": np.array(["a"] * 100)}
    run["cold"] = np.zeros(len(label), bool)
    held = HeldOutRows("w", ["2026-01-04"], request, 20, 1 - label, None, "none")
    with pytest.raises(CSCNNError, match="do not match the world's 100 test rows"):
        analyse([{"variant": "cnn", "seed": 0, "auc": 0.5}], {("cnn", 0): run}, held, 10, 0, {})


# --- the comparison on the tiny world ---------------------------------------------------------------------------

CFG = ["train.epochs=1", "train.num_threads=1"]
VARIANTS = ["no_image", "cnn"]


def _run_files(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*")) if not p.name.startswith(".")}


def test_compare_resumes_and_retrains_only_what_changed(tiny_with, tiny_world, tmp_path, capsys) -> None:
    world, out = open_world(tiny_world), tmp_path / "results.md"
    cfg = tiny_with(*CFG)
    first = compare(world, cfg, VARIANTS, [0, 1], out, "cscnn compare --seeds 2", resamples=200)
    assert first.trained == [("no_image", 0), ("cnn", 0), ("no_image", 1), ("cnn", 1)] and first.skipped == []
    assert [(r["variant"], r["seed"]) for r in first] == [("no_image", 0), ("no_image", 1), ("cnn", 0), ("cnn", 1)]
    files = _run_files(runs_folder(out))
    assert len(files) == 8  # a .json and a .npz per run
    capsys.readouterr()

    again = compare(world, cfg, VARIANTS, [0, 1], out, "cscnn compare --seeds 2", resamples=200)
    assert again.trained == [] and len(again.skipped) == 4
    assert _run_files(runs_folder(out)) == files  # nothing rewritten
    assert capsys.readouterr().out.count("finished run found") == 4
    assert [r["auc"] for r in again] == [r["auc"] for r in first]

    changed = tiny_with(*CFG, "train.lr=0.001")
    third = compare(world, changed, VARIANTS, [0, 1], out, "cscnn compare --seeds 2", resamples=200)
    assert len(third.trained) == 4 and third.skipped == []
    assert "stored runs made with other settings ignored (train.lr)" in capsys.readouterr().out
    assert set(files) < set(_run_files(runs_folder(out)))  # old runs kept, not deleted

    table = out.read_text()
    assert "`cscnn compare --seeds 2`" in table and "## How the intervals are computed" in table
    assert "| cnn | no_image | " in table and "95% CI over requests" in table
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["runs"] == json.loads(json.dumps(third))
    pair = record["analysis"]["slices"]["all"]["pairs"][0]
    assert (pair["variant"], pair["reference"]) == ("cnn", "no_image") and pair["verdict"] in (
        AHEAD,
        BEHIND,
        EQUIVALENT,
        UNDERPOWERED,
    )
    assert pair["difference"] == pytest.approx(np.mean(list(pair["per_seed"].values())))


def test_a_partial_or_corrupted_run_is_trained_again(tiny_with, tiny_world, tmp_path, capsys) -> None:
    world, out = open_world(tiny_world), tmp_path / "results.md"
    cfg = tiny_with(*CFG)
    compare(world, cfg, VARIANTS, [0, 1], out, "cscnn compare", resamples=0)
    folder = runs_folder(out)
    next(folder.glob("no_image-s0-*.npz")).write_bytes(b"PK\x03\x04 cut short")  # changed .npz
    next(folder.glob("no_image-s1-*.json")).write_text('{"key": ')  # half a record
    next(folder.glob("cnn-s1-*.json")).unlink()  # killed between the .npz and its record
    rows = compare(world, cfg, VARIANTS, [0, 1], out, "cscnn compare", resamples=0)
    assert rows.skipped == [("cnn", 0)]
    assert rows.trained == [("no_image", 0), ("no_image", 1), ("cnn", 1)]  # seed by seed
    assert len(_run_files(folder)) == 8
    assert "The bootstrap over requests was switched off" in out.read_text()


def test_the_oracle_row_needs_the_true_probabilities(tiny_with, tiny_world, tmp_path) -> None:
    cfg = tiny_with(*CFG)
    rows = run_comparison(open_world(tiny_world), cfg, VARIANTS, [0, 1], progress=False)
    without = tmp_path / "without"
    shutil.copytree(tiny_world, without)
    shutil.rmtree(without / "truth" / "probability", ignore_errors=True)
    write_results(rows, tmp_path / "a.md", "cscnn compare", open_world(without), cfg, resamples=100)
    assert "oracle: not available for this world" in (tmp_path / "a.md").read_text()

    with_truth = tmp_path / "with"
    shutil.copytree(without, with_truth)
    test_day = open_world(with_truth).days[-1]
    clicks = pd.read_parquet(with_truth / "impressions" / f"{test_day}.parquet")["click"].to_numpy()
    (with_truth / "truth" / "probability").mkdir(parents=True)
    for day in open_world(with_truth).days:  # a perfect oracle on the test day: the labels themselves
        n = len(pd.read_parquet(with_truth / "impressions" / f"{day}.parquet"))
        probability = clicks * 0.9 + 0.05 if day == test_day else np.full(n, 0.1)
        pd.DataFrame({"probability": probability}).to_parquet(with_truth / "truth" / "probability" / f"{day}.parquet")
    analysis = write_results(rows, tmp_path / "b.md", "cscnn compare", open_world(with_truth), cfg, resamples=100)
    assert analysis["slices"]["all"]["oracle_auc"] == 1.0
    share = analysis["slices"]["all"]["visual_share"]["cnn"]
    no_image, cnn = (np.mean([r["auc"] for r in rows if r["variant"] == v]) for v in VARIANTS)
    assert share["estimate"] == pytest.approx((cnn - no_image) / (1.0 - no_image))
    table = (tmp_path / "b.md").read_text()
    assert "| oracle | — | 1.0000 |" in table and "oracle: not available" not in table


def test_the_command_writes_the_table_and_resumes(tiny_world, tmp_path) -> None:
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    out = tmp_path / "results.md"
    args = ["compare", "--data", str(tiny_world), "--profile", "tiny", "--variants", "no_image", "--out", str(out)]
    args += ["--seeds", "2", "--bootstrap", "50", *(a for c in CFG for a in ("--set", c))]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 run(s) trained, 0 found finished" in first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 run(s) trained, 2 found finished" in again.output
    assert "50 resamples (bootstrap seed 0)" in out.read_text()
    bad = CliRunner().invoke(app, [*args, "--seeds", "0"])
    assert bad.exit_code == 2 and "--seeds must be >= 1" in bad.output
