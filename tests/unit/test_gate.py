"""The promotion gate's decisions: first run, better, worse, per-category regression, undefined AUC."""

from cscnn.config import GateConfig
from cscnn.tools.gate import decide

CFG = GateConfig(auc_floor=0.6, max_auc_drop=0.005, max_category_drop=0.05, min_category_impressions=100)


def metrics(auc, per_category, n=500):
    return {"auc": auc, "per_category_auc": per_category, "per_category_n": {k: n for k in per_category}}


def by_name(decision):
    return {c.name: c.passed for c in decision.checks}


def test_first_run_has_no_champion_and_skips_the_change_checks():
    decision = decide(metrics(0.70, {"a": 0.7, "b": 0.7}), None, CFG)
    assert decision.passed
    assert by_name(decision) == {"auc_floor": True, "auc_change": None}
    assert "no champion" in decision.summary()


def test_first_run_below_the_floor_fails():
    decision = decide(metrics(0.55, {"a": 0.55}), None, CFG)
    assert not decision.passed
    assert decision.reasons == ["auc_floor: candidate AUC 0.5500 vs floor 0.6000"]


def test_better_candidate_passes():
    decision = decide(metrics(0.75, {"a": 0.76, "b": 0.74}), metrics(0.72, {"a": 0.73, "b": 0.71}), CFG, "3")
    assert decision.passed and decision.reasons == []
    assert decision.champion_version == "3"


def test_small_drop_within_tolerance_passes_but_larger_drop_fails():
    champion = metrics(0.72, {"a": 0.72})
    assert decide(metrics(0.716, {"a": 0.716}), champion, CFG).passed
    worse = decide(metrics(0.70, {"a": 0.70}), champion, CFG)
    assert not worse.passed
    assert by_name(worse)["auc_change"] is False
    assert "delta -0.0200" in worse.summary()


def test_per_category_regression_blocks_an_overall_better_candidate():
    candidate = metrics(0.76, {"a": 0.85, "b": 0.60})
    champion = metrics(0.74, {"a": 0.75, "b": 0.70})
    decision = decide(candidate, champion, CFG)
    assert not decision.passed
    assert by_name(decision)["auc_change"] is True
    assert by_name(decision)["category:b"] is False
    assert by_name(decision)["category:a"] is True


def test_small_categories_and_undefined_auc_are_skipped_not_failed():
    candidate = metrics(0.76, {"a": 0.80, "b": 0.30, "c": None})
    candidate["per_category_n"]["b"] = 20
    champion = metrics(0.74, {"a": 0.75, "b": 0.70, "c": 0.7})
    decision = decide(candidate, champion, CFG)
    assert decision.passed
    assert by_name(decision)["category:b"] is None and by_name(decision)["category:c"] is None


def test_undefined_candidate_auc_fails_the_floor():
    decision = decide({"auc": None, "per_category_auc": {}}, None, CFG)
    assert not decision.passed


def test_thresholds_come_from_config_and_overrides(tiny_with, tiny_config):

    cfg = tiny_with("gate.max_auc_drop=0.05")
    champion = metrics(0.72, {"a": 0.72})
    assert decide(metrics(0.70, {"a": 0.70}), champion, cfg.gate).passed
    assert not decide(metrics(0.70, {"a": 0.70}), champion, tiny_config.gate).passed


def test_a_day_older_than_the_champions_never_replaces_it():
    """Days run out of order (a late or backfilled day after a newer one was promoted) keep the champion."""
    better, champion = metrics(0.80, {"a": 0.80}), metrics(0.72, {"a": 0.72})
    late = decide(better, champion, CFG, "5", day="2026-01-04", champion_day="2026-01-05")
    assert not late.passed and by_name(late)["day_order"] is False
    assert late.reasons == [
        "day_order: day 2026-01-04 is older than the champion's day 2026-01-05: a late or backfilled day never "
        "moves the champion backwards"
    ]
    assert decide(better, champion, CFG, "5", day="2026-01-05", champion_day="2026-01-05").passed  # same day
    assert decide(better, champion, CFG, "5", day="2026-01-06", champion_day="2026-01-05").passed
    unknown = decide(better, champion, CFG, "5", day="2026-01-04")  # a version registered before the day tag
    assert unknown.passed and by_name(unknown)["day_order"] is None
    assert "day_order" not in by_name(decide(better, None, CFG, day="2026-01-04"))  # no champion: nothing to order
