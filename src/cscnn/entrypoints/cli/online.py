"""`cscnn simulate`: simulated users send a day of traffic through the ranking service (docs/online.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cscnn.config import load_config
from cscnn.entrypoints.cli.modelling import app
from cscnn.entrypoints.cli.options import ConfigFile, DataDir, Overrides, Profile, StateDir, fail
from cscnn.errors import CSCNNError
from cscnn.settings import DEFAULT_PROFILE


@app.command("simulate")
def simulate_cmd(
    data: DataDir,
    day: Annotated[str, typer.Option(help="Day of the world to simulate (YYYY-MM-DD): its users and catalogue.")],
    arm: Annotated[
        list[str],
        typer.Option(
            help="NAME=SPEC, repeatable, the first is the control. SPEC: champion, alias:NAME, version:N, "
            "local:CHECKPOINT:TABLE (a service is started here for each), http://127.0.0.1:PORT (a running "
            "service on this machine), oracle, random."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the served log, the report and the picture.")],
    split: Annotated[str | None, typer.Option(help="Traffic shares per arm, e.g. 90,10 (default: equal).")] = None,
    landing: Annotated[
        Path | None,
        typer.Option(help="Also write the served log as this landing folder's day (never over an existing day)."),
    ] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")] = True,
    profile: Profile = DEFAULT_PROFILE,
    config: ConfigFile = None,
    overrides: Overrides = None,
    state: StateDir = None,
) -> None:
    """Simulated users send one day of requests to the arms (split per user by a stable hash), click what is
    shown with the world's true probability, and the report compares the arms (lift with 95% intervals)."""
    from cscnn.online.arms import ArmSpec
    from cscnn.online.served_day import parse_shares, simulate
    from cscnn.state import State

    try:
        cfg = load_config(profile, config, overrides)
        specs = [ArmSpec.parse(text) for text in arm]
        shares = parse_shares(split, len(specs))
        result = simulate(
            data, day, specs, shares, cfg, out, State.from_env(state), profile, landing, log_to_mlflow=mlflow
        )
    except CSCNNError as exc:
        fail(exc)
    typer.echo((result.out / "report.md").read_text())
    verdict = "PASSED" if result.validation_ok else "FAILED: " + "; ".join(result.validation_failures)
    typer.echo(f"validation of the served log: {verdict}")
    typer.echo(f"written: {result.out}" + (f"  (MLflow run {result.mlflow_run_id})" if result.mlflow_run_id else ""))
    failed = int(result.experiment.table["failed_requests"].sum())
    if failed:
        typer.secho(f"{failed} requests failed (counted, not dropped: see requests.parquet)", fg="yellow", err=True)


@app.command("online-loop")
def online_loop_cmd(
    work: Annotated[Path, typer.Option(help="Folder for the world, the landing data and the state.")] = Path(
        "data/online-loop"
    ),
    profile: Profile = "demo",
    history: Annotated[int, typer.Option(help="Days that land as the generator logged them, before serving.")] = 3,
    overrides: Overrides = None,
) -> None:
    """The daily loop on its own traffic: after the history days, each day's landing data is what the ranking
    service served to simulated users, and the cscnn_daily DAG retrains and gates on it (docs/online.md)."""
    from cscnn.entrypoints.online_loop import markdown_table, run_loop

    try:
        rows = run_loop(work, profile, history, overrides)
    except CSCNNError as exc:
        fail(exc)
    typer.echo("\n" + markdown_table(rows))
    typer.echo(f"written: {work / 'loop.json'}")
