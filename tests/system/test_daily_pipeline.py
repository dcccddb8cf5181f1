"""One real `kfp.local` run of the daily pipeline, day after day, on the tiny profile.

Everything is real here (Great Expectations, DVC with a folder remote, MLflow on SQLite, `bentoml build`
and `bentoml serve` for the package check); only the cluster is missing, so the GPU settings are ignored
by the local runner. The sequence:

    days 1, 2   validated and versioned; not enough history to train yet
    day 3       first candidate: no champion, gate passes -> v1 becomes champion
    day 4       strict floor (override): gate fails -> v2 is challenger, champion stays v1; the refresh step
                embeds day 4's new ads with v1's CNN
    day 5       broken upstream export: validation stops the run before training; nothing moves
    day 4 again relaxed thresholds, without force_retrain: refused by the first step (the day is decided)
    day 4 again relaxed thresholds, force_retrain: a rerun of the same day works and promotes v2 (same model on
                the same data: the version is reused, not registered twice)
"""

import hashlib
import json
import subprocess

import pytest

from cscnn.daily import status
from cscnn.data.schema import impressions_path
from cscnn.data.synth import generate_world
from cscnn.state import State
from cscnn.tools import model_registry
from kfp_pipelines.runner import run_pipeline

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]
BROKEN = DAYS[4]
LENIENT = ["gate.auc_floor=0.5"]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def loop(tiny_with, tmp_path_factory):
    root = tmp_path_factory.mktemp("daily")
    landing, state = root / "landing", State(root / "state")
    world = tiny_with("world.n_days=5", f"world.broken_days=[{BROKEN}]").world
    generate_world(world, landing)
    broken_sha = _sha(impressions_path(landing, BROKEN))
    mp = pytest.MonkeyPatch()
    mp.setenv("CSCNN_STATE", str(state.root))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("KFP_HOST", raising=False)

    def run(day, overrides, force_retrain=False):
        arguments = {"day": day, "landing": str(landing), "state_dir": str(state.root), "profile": "tiny"}
        try:
            run_pipeline("daily", {**arguments, "overrides": overrides, "force_retrain": force_retrain})
            error = None
        except RuntimeError as exc:
            error = str(exc)
        return {
            "error": error,
            "status": status.read(state, day),
            "champion": model_registry.resolve(model_registry.CHAMPION, state),
            "challenger": model_registry.resolve(model_registry.CHALLENGER, state),
        }

    results = {day: run(day, LENIENT) for day in DAYS[:3]}
    results["strict"] = run(DAYS[3], ["gate.auc_floor=0.99"])
    results["broken"] = run(BROKEN, LENIENT)
    # every threshold relaxed: a 2-epoch model on the tiny world is close to chance, on either side of 0.5
    relaxed = ["gate.auc_floor=0", "gate.max_auc_drop=1", "gate.max_category_drop=1"]
    results["refused"] = run(DAYS[3], relaxed)
    results["rerun"] = run(DAYS[3], relaxed, force_retrain=True)
    yield {"results": results, "state": state, "landing": landing, "broken_sha": broken_sha}
    mp.undo()


def test_first_days_wait_for_history(loop):
    for day in DAYS[:2]:
        result = loop["results"][day]
        assert result["error"] is None
        assert result["status"].status == status.DayStatus.WAITING_FOR_HISTORY
        assert result["status"].validation["success"] is True
        assert result["champion"] is None


def test_first_candidate_becomes_champion_with_its_table(loop):
    result = loop["results"][DAYS[2]]
    assert result["error"] is None, result["error"]
    record = result["status"]
    assert record.status == status.DayStatus.PROMOTED
    assert record.gate_passed is True
    assert [c["name"] for c in record.gate["checks"] if c["passed"] is None] == ["auc_change"]
    assert result["champion"].version == "1" and result["champion"].embeddings == f"embeddings/{DAYS[2]}"
    assert record.package["top_items"], "the packaged service answered the canned request"


def test_worse_candidate_is_registered_as_challenger_and_champion_stays(loop):
    result = loop["results"]["strict"]
    assert result["error"] is None, result["error"]
    assert result["status"].status == status.DayStatus.NOT_PROMOTED
    assert any(r.startswith("auc_floor") for r in result["status"].gate["reasons"])
    assert result["champion"].version == "1"
    assert result["challenger"].version == "2"
    # the refresh step embedded day 4's new ads with the champion's CNN and moved its table tag
    assert result["status"].refresh["refreshed"] == 4
    assert result["champion"].embeddings == f"embeddings/{DAYS[3]}-refresh"


def test_bad_day_stops_before_training_and_nothing_moves(loop):
    result, state = loop["results"]["broken"], loop["state"]
    assert result["error"] is not None and "validate" in result["error"]
    record = result["status"]
    assert record.status == status.DayStatus.REJECTED
    failed = {f["expectation"] for f in record.failures}
    assert any("in_set" in name for name in failed), failed  # click = 2
    assert any("unique" in name for name in failed), failed  # duplicated impressions
    assert record.candidate is None and record.data_version is None
    assert result["champion"].version == "1" and result["challenger"].version == "2"
    assert not impressions_path(state.registry_world, BROKEN).exists()  # never versioned
    assert _sha(impressions_path(loop["landing"], BROKEN)) == loop["broken_sha"]  # raw data untouched


def test_a_decided_day_is_refused_by_the_pipeline_without_force_retrain(loop):
    refused, strict = loop["results"]["refused"], loop["results"]["strict"]
    assert refused["error"] is not None and "validate" in refused["error"]
    assert refused["status"] == strict["status"]  # refused before any step recorded anything
    assert refused["champion"].version == "1"


def test_rerun_of_a_day_works_and_promotes(loop):
    result = loop["results"]["rerun"]
    assert result["error"] is None, result["error"]
    assert result["status"].status == status.DayStatus.PROMOTED
    # the same data and seed train the same model as the strict run: its version v2 is reused, not duplicated
    assert result["champion"].version == "2"
    assert [ref.version for ref in model_registry.list_versions(loop["state"])] == ["1", "2"]
    assert model_registry.get_version("1", loop["state"]).embeddings  # the old champion stays for rollback


def test_mlflow_run_holds_metrics_pictures_reports_and_data_version(loop):
    import mlflow

    state = loop["state"]
    client = model_registry.client(state)
    ref = model_registry.get_version("1", state)
    run = client.get_run(ref.run_id)
    assert run.data.tags["data_version"] == loop["results"][DAYS[2]]["status"].data_version
    assert {"auc", "logloss", "cold_start_auc", "gate_passed"} <= set(run.data.metrics)
    assert any(name.startswith("auc_c") for name in run.data.metrics)
    assert run.data.params["gate.auc_floor"] == "0.5"
    listed = {
        a.path for folder in ("pictures", "reports", "validation") for a in client.list_artifacts(ref.run_id, folder)
    }
    assert {"pictures/roc_curve.png", "pictures/per_category_auc.png", "pictures/attention_heatmaps.png"} <= listed
    assert {"reports/gate.json", "reports/evaluation.json", "validation/validation.json"} <= listed
    model = mlflow.models.get_model_info(f"models:/{ref.name}/{ref.version}")
    assert model.signature is not None and "image" in model.signature.inputs.input_names()


def test_data_registry_has_one_commit_per_accepted_day_and_rolls_back(loop):
    state = loop["state"]
    log = subprocess.run(
        ["git", "-C", str(state.data_registry), "log", "--format=%s"], capture_output=True, text=True, check=True
    ).stdout
    for day in DAYS[:4]:
        assert f"data: day {day}" in log
    assert BROKEN not in log
    version_tags = {loop["results"][day]["status"].data_version for day in DAYS[:3]}
    assert len(version_tags) == 3

    ref = model_registry.rollback(state)
    assert ref.version == "1"
    assert model_registry.resolve(model_registry.CHAMPION, state).version == "1"
    json.dumps(ref.to_dict())


def test_cli_daily_run_skips_a_decided_day_like_the_dag(loop):
    """`cscnn daily run` takes the DAG's path: a decided day is not run again without --force."""
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    state = loop["state"]
    before = model_registry.list_versions(state)
    args = ["daily", "run", "--day", DAYS[2], "--landing", str(loop["landing"]), "--profile", "tiny"]
    result = CliRunner().invoke(app, [*args, "--state", str(state.root)])
    assert result.exit_code == 0, result.output
    assert "already decided" in result.output and "pass --force" in result.output
    assert json.loads(result.output[result.output.index("{") :])["status"] == "promoted"
    assert model_registry.list_versions(state) == before  # nothing ran


def test_the_run_leaves_the_ui_artifacts_a_kfp_backend_shows(loop):
    """What the KFP UI renders: the validation report (HTML), the gate decision (Markdown), the ROC
    (ClassificationMetrics, in the task's executor output as KFP records it)."""
    [run] = (loop["state"].root / "kfp-local" / DAYS[2]).iterdir()
    assert "Validation of 2026-01-03: PASSED" in (run / "validate" / "summary").read_text()
    assert (run / "gate" / "summary").read_text().startswith("Gate: **PASS**")
    roc = json.loads((run / "register" / "executor_output.json").read_text())["artifacts"]["roc"]["artifacts"][0]
    points = roc["metadata"]["confidenceMetrics"]
    assert 2 < len(points) <= 101 and all(0 <= p["confidenceThreshold"] <= 1 for p in points)
