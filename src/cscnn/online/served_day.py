"""`cscnn simulate`: one day of simulated traffic through the arms, written, validated, reported and logged.

Writes to `out/`: `impressions.parquet` (what was shown and clicked, the data contract), `requests.parquet`
(one row per request: arm, version, failed or not, clicks, expected clicks, latency), `report.md`,
`cumulative_lift.png`, `summary.json`, and `validation/` (the same Great Expectations suite as any landing day,
run on the served log). With `landing`, the served log also becomes that folder's impressions of the day, for
the daily loop to train on; an existing day is never overwritten (raw data is never modified).
The report, the picture and the per-arm figures are logged to MLflow (experiment `cscnn-online`), tagged with
the model versions each arm served.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.config import Config
from cscnn.data import schema
from cscnn.data.io import list_days, write_table
from cscnn.errors import CSCNNError
from cscnn.files import atomic_dir, write_json
from cscnn.online.arms import ArmSpec, open_arms
from cscnn.online.click_model import WorldTruth
from cscnn.online.experiment import Experiment, cumulative_lift_png, markdown, run_day
from cscnn.state import State

ONLINE_EXPERIMENT = "cscnn-online"


@dataclass
class Simulation:
    experiment: Experiment
    out: Path
    validation_ok: bool
    validation_failures: list[str]
    mlflow_run_id: str | None


def parse_shares(text: str | None, n_arms: int) -> list[float]:
    """`--split 90,10` -> [90.0, 10.0]; equal shares when not given."""
    if not text:
        return [1.0] * n_arms
    try:
        shares = [float(part) for part in text.split(",")]
    except ValueError:
        raise CSCNNError(f"--split {text!r}: comma-separated numbers, one per arm (e.g. 50,50)") from None
    if len(shares) != n_arms or any(s <= 0 for s in shares):
        raise CSCNNError(f"--split {text!r}: {n_arms} positive numbers, one per --arm, in the same order")
    return shares


def simulate(
    world: Path,
    day: str,
    specs: list[ArmSpec],
    shares: list[float],
    cfg: Config,
    out: Path,
    state: State,
    profile: str,
    landing: Path | None = None,
    log_to_mlflow: bool = True,
    title: str = "",
) -> Simulation:
    if not specs:
        raise CSCNNError("name at least one arm (--arm NAME=SPEC)")
    if len({s.name for s in specs}) != len(specs):
        raise CSCNNError(f"arm names must differ: {[s.name for s in specs]}")
    truth = WorldTruth.load(world)
    truth.day_index(day)
    target = None
    if landing is not None:
        target = schema.impressions_path(Path(landing), day)
        if target.exists():
            raise CSCNNError(f"{target} exists: the landing folder's days are raw data and are never overwritten")
    out = Path(out)
    with open_arms(specs, truth, state, profile, cfg.online) as rankers:
        experiment = run_day(truth, day, rankers, shares, cfg.online)
    served = experiment.served
    with atomic_dir(out) as tmp:
        if len(served.impressions):
            write_table(served.impressions, tmp / "impressions.parquet", schema.IMPRESSIONS)
        served.requests.to_parquet(tmp / "requests.parquet", index=False)
        pd.DataFrame({"probability": served.probability}).to_parquet(tmp / "probability.parquet", index=False)
        (tmp / "report.md").write_text(markdown(experiment, title))
        cumulative_lift_png(experiment, tmp / "cumulative_lift.png")
        ok, failures = _validate(world, landing, day, served.impressions, cfg, tmp / "validation")
        write_json(tmp / "summary.json", _summary(experiment, specs, ok, failures))
    if target is not None and len(served.impressions):
        write_table(served.impressions, target, schema.IMPRESSIONS)  # after validation: the day as served
    run_id = _log(experiment, specs, out, state) if log_to_mlflow else None
    return Simulation(experiment, out, ok, failures, run_id)


def _validate(
    world: Path, landing: Path | None, day: str, impressions: pd.DataFrame, cfg: Config, out: Path
) -> tuple[bool, list[str]]:
    """The landing-day suite on the served log, in a view of the world (catalogue, users, images) that holds
    this day and, for the category-drift check, the day before as the landing folder (or world) has it."""
    from cscnn.tools.validation import validate_day

    if not len(impressions):
        return False, ["no impressions: every request failed"]
    source = Path(landing) if landing is not None else Path(world)
    with tempfile.TemporaryDirectory(prefix="cscnn-served-") as view:
        view = Path(view)
        for name in (schema.ITEMS_FILE, schema.USERS_FILE, schema.IMAGES_DIR):
            os.symlink((source / name).resolve(), view / name)
        write_table(impressions, schema.impressions_path(view, day), schema.IMPRESSIONS)
        earlier = [d for d in list_days(source) if d < day]
        if earlier:
            shutil.copy(schema.impressions_path(source, earlier[-1]), schema.impressions_path(view, earlier[-1]))
        report = validate_day(view, day, out, cfg.validation, previous_day=earlier[-1] if earlier else None)
    failures = [f"{f['table']}: {f['expectation']} {f.get('column') or ''}: {f['details']}" for f in report.failures]
    return report.success, failures


def _summary(experiment: Experiment, specs: list[ArmSpec], ok: bool, failures: list[str]) -> dict:
    table = experiment.table.replace({np.nan: None})
    return {
        "day": experiment.day,
        "arms": {s.name: s.spec for s in specs},
        "versions": experiment.versions,
        "table": table.to_dict(orient="records"),
        "throughput": _throughput(experiment),
        "oracle_per_request": float(experiment.oracle_expected.mean()),
        "random_per_request": float(experiment.random_expected.mean()),
        "validation": {"success": ok, "failures": failures},
    }


def _throughput(experiment: Experiment) -> dict:
    """Per arm: requests per second over its wall time (its requests run `online.concurrency` at a time) and
    the client-side latency percentiles."""
    req = experiment.served.requests
    out = {}
    for arm, seconds in experiment.seconds.items():
        latency = req.loc[req["arm"] == arm, "latency_ms"].to_numpy()
        n = len(latency)
        out[arm] = {
            "requests": n,
            "seconds": round(seconds, 3),
            "requests_per_s": round(n / seconds, 1) if seconds > 0 else None,
            "latency_ms_p50": float(np.percentile(latency, 50)) if n else None,
            "latency_ms_p99": float(np.percentile(latency, 99)) if n else None,
        }
    return out


def _log(experiment: Experiment, specs: list[ArmSpec], out: Path, state: State) -> str:
    import mlflow

    from cscnn.tools import model_registry

    client = model_registry.client(state)
    experiment_ref = client.get_experiment_by_name(ONLINE_EXPERIMENT)
    if experiment_ref is None:
        location = state.artifact_root.as_uri() if state.tracking_uri.startswith("sqlite") else None
        experiment_id = client.create_experiment(ONLINE_EXPERIMENT, artifact_location=location)
    else:
        experiment_id = experiment_ref.experiment_id
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{experiment.day} {' vs '.join(experiment.arms)}"
    ) as run:
        mlflow.set_tags(
            {
                "day": experiment.day,
                **{f"arm.{s.name}.spec": s.spec for s in specs},
                **{f"arm.{a}.versions": ",".join(v) for a, v in experiment.versions.items()},
            }
        )
        for _, row in experiment.table.iterrows():
            for key in ("requests", "failed_requests", "ctr_at_k", "expected_per_request", "expected_clicks_lift"):
                value = row[key]
                if value is not None and np.isfinite(value):
                    mlflow.log_metric(f"{row['arm']}.{key}", float(value))
        mlflow.log_metric("oracle_per_request", float(experiment.oracle_expected.mean()))
        for name in ("report.md", "cumulative_lift.png", "summary.json"):
            mlflow.log_artifact(str(out / name))
        return run.info.run_id


def read_summary(out: Path) -> dict:
    return json.loads((Path(out) / "summary.json").read_text())
