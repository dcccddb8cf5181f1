"""The online simulator (`cscnn.online`): the world's truth re-drawn, clicks that follow it, the per-user split,
the report's intervals, a served day through validation and training, and traffic through a real service."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cscnn.config import load_config
from cscnn.data import schema
from cscnn.data.io import list_days, open_world
from cscnn.entrypoints.cli import app
from cscnn.errors import CSCNNError
from cscnn.online.arms import ArmSpec, ArmSpecError, BaselineRanker, HttpRanker, check_local_url
from cscnn.online.click_model import NoTruthError, WorldTruth
from cscnn.online.experiment import assign, run_day
from cscnn.online.served_day import simulate
from cscnn.online.traffic import draw_requests, show_and_click
from cscnn.state import State
from cscnn.tools.packaging import free_port


@pytest.fixture(scope="module")
def truth(tiny_world) -> WorldTruth:
    return WorldTruth.load(tiny_world)


def online_cfg(**changes):
    return dataclasses.replace(load_config("tiny").online, **changes)


def test_truth_is_the_generators_click_model(tiny_world, truth) -> None:
    world = open_world(tiny_world)
    for day in world.days:
        logged = world.impressions([day])
        expected = pd.read_parquet(tiny_world / "truth" / "probability" / f"{day}.parquet")["probability"].to_numpy()
        user = pd.Index(truth.user_ids).get_indexer(logged["user_id"])
        item = pd.Index(truth.item_ids).get_indexer(logged["item_id"])
        device = pd.Index(["mobile", "desktop", "tablet"]).get_indexer(logged["device"])
        got = truth.probability(user, item, logged["position"].to_numpy(), device)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_truth_refuses_a_world_it_cannot_redraw(tiny_world, tmp_path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(tiny_world, changed)
    items = pd.read_parquet(changed / "truth" / "items.parquet")
    items["visual_score"] += 0.5
    items.to_parquet(changed / "truth" / "items.parquet", index=False)
    with pytest.raises(NoTruthError, match="does not give the world on disk"):
        WorldTruth.load(changed)
    shutil.copy(tiny_world / "truth" / "items.parquet", changed / "truth" / "items.parquet")
    summary = json.loads((changed / "world.json").read_text())
    summary["config"]["affinity_weight"] += 0.5  # the same users and items, another click model
    (changed / "world.json").write_text(json.dumps(summary))
    with pytest.raises(NoTruthError, match="does not give the probabilities"):
        WorldTruth.load(changed)
    (changed / "world.json").unlink()
    with pytest.raises(NoTruthError, match="only a synthetic world"):
        WorldTruth.load(changed)


def test_clicks_follow_the_true_probability_at_the_shown_slot(truth) -> None:
    """Random pages, many of them: per slot and per probability band, the clicks stay within 4 standard
    deviations of the sum of the true probabilities (a wrong slot, a dropped position effect or a biased draw
    moves these by tens of deviations at this size)."""
    cfg = online_cfg(requests=4000)
    day = truth.start_day.strftime("%Y-%m-%d")
    rng = np.random.default_rng(7)
    requests = draw_requests(truth, day, cfg.requests, cfg.candidates, rng)
    answers = BaselineRanker("random", truth, "random", seed=3).rank(requests, np.arange(len(requests)))
    served = show_and_click(truth, requests, np.full(len(requests), "random"), answers, cfg.top_k, rng)
    frame = served.impressions.assign(p=served.probability)
    assert len(frame) == cfg.requests * cfg.top_k and set(frame["position"]) == set(range(1, cfg.top_k + 1))
    frame["band"] = pd.qcut(frame["p"], 5, labels=False)
    for key in ("position", "band"):
        for _, group in frame.groupby(key):
            z = (group["click"].sum() - group["p"].sum()) / np.sqrt((group["p"] * (1 - group["p"])).sum())
            assert abs(z) < 4, f"{key}: clicks {group['click'].sum()} vs expected {group['p'].sum():.1f} (z={z:.1f})"
    # the position effect is in the probabilities: slot 1 beats the last slot on the same random pages
    by_slot = frame.groupby("position")["p"].mean()
    assert by_slot.iloc[0] > by_slot.iloc[-1]


def test_arm_assignment_is_stable_and_near_the_split() -> None:
    users = np.asarray([f"u{i:06d}" for i in range(20_000)], dtype=object)
    arms = assign(users, ["control", "treatment"], [90, 10], "salt-a")
    assert abs((arms == "treatment").mean() - 0.10) < 0.01
    shuffled = np.random.default_rng(0).permutation(len(users))
    again = assign(users[shuffled], ["control", "treatment"], [90, 10], "salt-a")
    assert (again == arms[shuffled]).all()  # a user's arm depends on the user, not on the batch
    repeated = assign(np.repeat(users[:50], 3), ["control", "treatment"], [90, 10], "salt-a")
    assert (repeated.reshape(50, 3) == repeated.reshape(50, 3)[:, :1]).all()
    other_salt = assign(users, ["control", "treatment"], [90, 10], "salt-b")
    assert 0.1 < (other_salt != arms).mean() < 0.3  # a new salt reshuffles (2 x 0.9 x 0.1 expected)
    with pytest.raises(CSCNNError, match="shares"):
        assign(users, ["a", "b"], [1.0], "s")


def test_oracle_arm_beats_random_arm_with_an_interval_above_zero(truth) -> None:
    cfg = online_cfg(requests=600)
    rankers = {name: BaselineRanker(name, truth, name) for name in ("random", "oracle")}
    day = list_days(truth.root)[-1]
    experiment = run_day(truth, day, rankers, [1, 1], cfg)
    table = experiment.table.set_index("arm")
    assert table.loc["oracle", "expected_clicks_lift_low"] > 0
    assert table.loc["oracle", "expected_per_request"] == pytest.approx(table.loc["oracle", "oracle_per_request"])
    assert table["requests"].sum() == cfg.requests and table["failed_requests"].sum() == 0
    # the same random arm against itself: the interval holds zero
    same = run_day(truth, day, {"a": rankers["random"], "b": BaselineRanker("b", truth, "random", 9)}, [1, 1], cfg)
    row = same.table.set_index("arm").loc["b"]
    assert row["expected_clicks_lift_low"] < 0 < row["expected_clicks_lift_high"]


def test_served_day_round_trips_through_validation_and_training(tiny_with, tiny_world, tmp_path) -> None:
    """The served log lands as a day of the landing folder, passes the landing suite, and trains."""
    from cscnn.training.train import train

    landing = tmp_path / "landing"
    shutil.copytree(tiny_world, landing)
    last = list_days(landing)[-1]
    schema.impressions_path(landing, last).unlink()
    cfg = tiny_with("train.epochs=1")
    state = State.from_env(tmp_path / "state")
    result = simulate(
        tiny_world,
        last,
        [ArmSpec.parse("best=oracle")],
        [1.0],
        cfg,
        tmp_path / "out",
        state,
        "tiny",
        landing=landing,
        log_to_mlflow=False,
    )
    assert result.validation_ok, result.validation_failures
    served = open_world(landing).impressions([last])
    assert len(served) == cfg.online.requests * cfg.online.top_k
    assert served["position"].max() == cfg.online.top_k
    trained = train(open_world(landing), cfg, tmp_path / "model", progress=False)
    assert trained.card["fingerprint"]
    with pytest.raises(CSCNNError, match="never overwritten"):  # raw data is never modified
        simulate(
            tiny_world,
            last,
            [ArmSpec.parse("best=oracle")],
            [1.0],
            cfg,
            tmp_path / "out2",
            state,
            "tiny",
            landing=landing,
            log_to_mlflow=False,
        )


def test_service_errors_are_failed_requests_and_only_local_services_get_traffic(truth) -> None:
    for url in ("http://example.com:3000", "http://10.0.0.8:3000", "ftp://127.0.0.1:3000"):
        with pytest.raises(ArmSpecError):
            check_local_url(url)
    with pytest.raises(ArmSpecError, match="NAME=SPEC"):
        ArmSpec.parse("champion")
    closed = HttpRanker("down", f"http://127.0.0.1:{free_port()}", truth, concurrency=2, timeout=2)
    cfg = online_cfg(requests=40)
    experiment = run_day(
        truth,
        list_days(truth.root)[-1],
        {"oracle": BaselineRanker("oracle", truth, "oracle"), "down": closed},
        [1, 1],
        cfg,
    )
    row = experiment.table.set_index("arm").loc["down"]
    assert row["requests"] > 0 and row["failed_requests"] == row["requests"] and row["impressions"] == 0
    assert experiment.served.requests["error"].str.startswith("ConnectError").sum() == row["failed_requests"]


def test_cli_names_a_bad_arm_and_a_bad_split(tiny_world, tmp_path) -> None:
    runner = CliRunner()
    base = [
        "simulate",
        "--data",
        str(tiny_world),
        "--day",
        "2026-01-02",
        "--out",
        str(tmp_path / "o"),
        "--profile",
        "tiny",
        "--no-mlflow",
    ]
    bad_arm = runner.invoke(app, [*base, "--arm", "x=https://example.org"])
    assert bad_arm.exit_code == 2 and "only to a service on this machine" in bad_arm.output
    bad_split = runner.invoke(app, [*base, "--arm", "a=oracle", "--arm", "b=random", "--split", "50"])
    assert bad_split.exit_code == 2 and "one per --arm" in bad_split.output
    outside = runner.invoke(app, [*base[:4], "2030-01-01", *base[5:], "--arm", "a=oracle"])
    assert outside.exit_code == 2 and "outside this world" in outside.output


def test_traffic_through_the_real_service(tiny_with, tiny_world, tmp_path) -> None:
    """`bentoml serve` of bento/ on a tiny model (local folders), simulated users over HTTP: every request is
    answered, by that model version, and the report is logged to MLflow."""
    from mlflow import MlflowClient

    from cscnn.training.embed import export_table
    from cscnn.training.train import train

    cfg = tiny_with("train.epochs=1", "online.requests=60")
    model, table = tmp_path / "model", tmp_path / "table"
    card = train(open_world(tiny_world), cfg, model, progress=False).card
    export_table(model, tiny_world, table)
    state = State.from_env(tmp_path / "state")
    result = simulate(
        tiny_world,
        list_days(tiny_world)[-1],
        [ArmSpec.parse("random=random"), ArmSpec.parse(f"cscnn=local:{model}:{table}")],
        [1, 1],
        cfg,
        tmp_path / "out",
        state,
        "tiny",
        log_to_mlflow=True,
    )
    row = result.experiment.table.set_index("arm").loc["cscnn"]
    assert row["requests"] > 0 and row["failed_requests"] == 0
    assert result.experiment.versions["cscnn"] == [card["fingerprint"]]
    assert result.validation_ok, result.validation_failures
    run = MlflowClient(state.tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.tags["arm.cscnn.versions"] == card["fingerprint"]
    assert {"report.md", "cumulative_lift.png", "summary.json"} <= {
        a.path for a in MlflowClient(state.tracking_uri).list_artifacts(result.mlflow_run_id)
    }


def test_request_adjustment_keeps_the_mean_and_removes_the_covariates_variance() -> None:
    from cscnn.online.experiment import cuped

    rng = np.random.default_rng(0)
    covariate = rng.gamma(2.0, 1.0, 5000)  # how promising each request is, before any arm acts
    value = 0.5 * covariate + rng.normal(0, 0.2, 5000)
    adjusted = cuped(value, covariate)
    assert adjusted.mean() == pytest.approx(value.mean())
    assert adjusted.var() < 0.2 * value.var()
    assert np.allclose(cuped(value, np.full(5000, 3.0)), value)  # a constant covariate changes nothing


def test_the_loops_landing_starts_with_the_logged_history_only(tiny_world, tmp_path) -> None:
    from cscnn.entrypoints.online_loop import _prepare_landing, run_loop

    days = list_days(tiny_world)
    landing = tmp_path / "landing"
    _prepare_landing(tiny_world, landing, days[:2])
    assert list_days(landing) == days[:2]  # the later days land as what the service serves
    for name in (schema.ITEMS_FILE, schema.USERS_FILE):
        assert (landing / name).read_bytes() == (tiny_world / name).read_bytes()
    assert sorted(p.name for p in (landing / schema.IMAGES_DIR).iterdir()) == sorted(
        p.name for p in (tiny_world / schema.IMAGES_DIR).iterdir()
    )
    _prepare_landing(tiny_world, landing, days)  # an existing landing (a rerun) is kept as it is
    assert list_days(landing) == days[:2]
    with pytest.raises(CSCNNError, match=r"--history must be in 1\.\.3"):
        run_loop(tmp_path / "loop", "tiny", history=len(days))
