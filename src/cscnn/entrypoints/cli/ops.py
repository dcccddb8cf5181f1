"""Subcommands for operating the loop: the model registry, a day's pipeline run and record, the compiled
pipelines, the embedded Airflow, and the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cscnn.config import load_config
from cscnn.entrypoints.cli.modelling import app
from cscnn.entrypoints.cli.options import (
    ExitCode,
    Overrides,
    Profile,
    StateDir,
    fail,
    print_json,
    require,
)
from cscnn.errors import CSCNNError
from cscnn.settings import DEFAULT_PROFILE

model_app = typer.Typer(help="The MLflow registry: versions, aliases, rollback.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("list")
def model_list(state: StateDir = None, profile: Profile = DEFAULT_PROFILE) -> None:
    """Registered versions of the configured model (`serve.model_name`), with the aliases that name them."""
    from cscnn.state import State
    from cscnn.tools import model_registry

    st, name = State.from_env(state), load_config(profile).serve.model_name
    champion, challenger = (
        model_registry.resolve(a, st, name) for a in (model_registry.CHAMPION, model_registry.CHALLENGER)
    )
    for ref in model_registry.list_versions(st, name):
        aliases = [n for n, r in (("champion", champion), ("challenger", challenger)) if r and r.version == ref.version]
        typer.echo(f"v{ref.version}  model {ref.fingerprint}  table {ref.embeddings or '-'}  {' '.join(aliases)}")


@model_app.command("rollback")
def model_rollback(
    to: Annotated[str | None, typer.Option(help="Version to serve (default: the previous champion).")] = None,
    state: StateDir = None,
    profile: Profile = DEFAULT_PROFILE,
) -> None:
    """Move `champion` back to the previous champion (or --to VERSION); a running service follows."""
    from cscnn.state import State
    from cscnn.tools import model_registry

    try:
        st, name = State.from_env(state), load_config(profile).serve.model_name
        before = model_registry.resolve(model_registry.CHAMPION, st, name)
        ref = model_registry.rollback(st, name=name, to_version=to)
    except CSCNNError as exc:
        fail(exc)
    typer.echo(f"champion: v{before.version} -> v{ref.version}")


daily_app = typer.Typer(
    help="The daily loop without Airflow: run the Kubeflow pipeline for a day.", no_args_is_help=True
)
app.add_typer(daily_app, name="daily")


@daily_app.command("run")
def daily_run(
    day: Annotated[str, typer.Option(help="Day to process (YYYY-MM-DD).")],
    landing: Annotated[Path, typer.Option(help="Landing world folder the day's raw data arrives in.")],
    pipeline: Annotated[str, typer.Option(help="daily or embedding_refresh.")] = "daily",
    profile: Profile = DEFAULT_PROFILE,
    overrides: Overrides = None,
    force: Annotated[bool, typer.Option(help="Run a day the gate already decided again (else it is skipped).")] = False,
    state: StateDir = None,
) -> None:
    """Run the pipeline for one day, as the Airflow DAG does: kfp.local, or the KFP host in $KFP_HOST.
    The day's record is printed either way; exit code 3 when validation rejected the day, 4 when the gate kept
    the champion, 2 for a bad config or a day that has not landed, 1 when a step failed (0 for a skipped day)."""
    from cscnn.daily import faults, status
    from cscnn.entrypoints import orchestration
    from cscnn.state import State, handed_over

    st = State.from_env(state)
    arguments = {"day": day, "landing": str(landing.resolve()), "state_dir": handed_over(st), "profile": profile}
    if pipeline == "daily":
        arguments["overrides"] = list(overrides or [])
    try:
        if pipeline not in orchestration.PIPELINES:
            raise CSCNNError(f"unknown pipeline {pipeline!r}; choose from {list(orchestration.PIPELINES)}")
        orchestration.check_day(day)
        ran = orchestration.run_day(pipeline, arguments, force, "pass --force to run it again")
    except (orchestration.NotRetryable, RuntimeError) as exc:  # rejected data, a failed step, bad config
        typer.secho(f"pipeline failed: {exc}", fg=typer.colors.RED, err=True)
        print_json(faults.reported(st, day).to_dict())
        if isinstance(exc, orchestration.DayRejected):
            raise typer.Exit(code=ExitCode.REJECTED) from None
        code = ExitCode.USAGE if isinstance(exc, orchestration.NotRetryable) else ExitCode.FAILED
        raise typer.Exit(code=code) from None
    except (CSCNNError, ValueError) as exc:
        fail(exc)
    record = faults.reported(st, day)
    print_json(record.to_dict())
    if "run" in ran and record.status == status.DayStatus.NOT_PROMOTED:
        raise typer.Exit(code=ExitCode.NOT_PROMOTED)


@daily_app.command("status")
def daily_status(day: Annotated[str, typer.Option(help="Day (YYYY-MM-DD).")], state: StateDir = None) -> None:
    """What the daily run decided for a day (validation, data version, gate, model versions) as JSON; when its
    last run failed, also one line on stderr: the step, the error and whether a retry can help. A step whose
    process is gone without recording an outcome reads as failed (interrupted)."""
    from cscnn.daily import faults
    from cscnn.state import State

    record = faults.reported(State.from_env(state), day)
    print_json(record.to_dict())
    line = faults.failure_line(record)
    if line:
        typer.secho(line, fg=typer.colors.RED, err=True)


pipeline_app = typer.Typer(help="The Kubeflow pipelines (kfp_pipelines/).", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
def pipeline_compile() -> None:
    """Regenerate kfp_pipelines/compiled/*.yaml (committed; a test fails when they are stale)."""
    from kfp_pipelines.runner import compile_all

    for path in compile_all():
        typer.echo(f"compiled {path}")


airflow_app = typer.Typer(
    help="The embedded Airflow inside the state folder (AIRFLOW_HOME=<state>/airflow, SQLite, this checkout's dags/).",
    no_args_is_help=True,
)
app.add_typer(airflow_app, name="airflow")


@airflow_app.command("env")
def airflow_env_cmd(state: StateDir = None) -> None:
    """Print `export` lines for the embedded Airflow: eval "$(cscnn airflow env)" && airflow standalone."""
    from cscnn.entrypoints import airflow_setup
    from cscnn.state import State

    typer.echo(airflow_setup.export_lines(airflow_setup.airflow_env(State.from_env(state))))


@airflow_app.command("init")
def airflow_init_cmd(state: StateDir = None) -> None:
    """airflow db migrate (once per Airflow version) and the state pool the DAGs use."""
    from cscnn.entrypoints import airflow_setup
    from cscnn.state import State

    st = State.from_env(state)
    seconds = airflow_setup.init(st, quiet=False)
    typer.echo(f"airflow home {st.airflow_home}: " + (f"initialised in {seconds:.1f} s" if seconds else "ready"))


@airflow_app.command("run-day")
def airflow_run_day_cmd(
    days: Annotated[list[str], typer.Argument(help="Day(s), YYYY-MM-DD, run in order.")],
    dag: Annotated[str, typer.Option(help="DAG id.")] = "cscnn_daily",
    conf: Annotated[str | None, typer.Option(help="DAG params as JSON, e.g. '{\"auc_floor\": 0.7}'.")] = None,
    state: StateDir = None,
) -> None:
    """`airflow dags test DAG DAY` for each day, in order; exit code: the worst of them."""
    from cscnn.entrypoints import airflow_setup
    from cscnn.state import State

    try:
        params = json.loads(conf) if conf else None
        if params is not None and not isinstance(params, dict):
            raise CSCNNError(f"--conf must be a JSON object, got {conf!r}")
    except json.JSONDecodeError as exc:
        fail(CSCNNError(f"--conf is not JSON: {exc}"))
    except CSCNNError as exc:
        fail(exc)
    st = State.from_env(state)
    codes = {day: airflow_setup.run_dag(dag, day, params, st) for day in days}
    for day, code in codes.items():
        typer.echo(f"{dag} {day}: {'success' if code == 0 else f'FAILED (exit code {code})'}")
    raise typer.Exit(code=max(codes.values()))


@app.command("demo")
def demo_cmd(
    landing: Annotated[Path, typer.Option(help="Landing folder for the synthetic world.")] = Path("data/demo"),
    profile: Profile = "demo",
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="End with one request to the service.")] = True,
    state: StateDir = None,
) -> None:
    """The main job on the embedded default: the Airflow DAG over several days, then one ranking request."""
    from cscnn.entrypoints.demo import run_demo
    from cscnn.state import State

    try:
        code = run_demo(landing, profile, State.from_env(state), serve=serve)
    except CSCNNError as exc:
        fail(exc)
    raise typer.Exit(code=code)


@app.command("rehearsal")
def rehearsal_cmd(
    work: Annotated[Path, typer.Option(help="Folder for everything it starts and writes (replaced).")] = Path(
        "data/rehearsal"
    ),
    profile: Profile = "tiny",
    days: Annotated[int, typer.Option(help="Days of the daily pipeline to run.")] = 3,
) -> None:
    """The cluster path on this machine: S3 (moto), mlflow server, a git remote; the daily pipeline for DAYS
    days with no shared folder, the ranking service, one request; the embedded run's decisions beside it."""
    require(("moto", "flask", "flask_cors"), "rehearsal", "cscnn rehearsal")  # moto's server mode
    from cscnn.entrypoints.rehearsal import markdown, run_rehearsal

    try:
        result = run_rehearsal(work, profile, days)
    except CSCNNError as exc:
        fail(exc)
    (work / "rehearsal.json").write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(markdown(result))
    typer.echo(f"service: {result['service']}")
    typer.echo(f"cluster run {result['cluster_seconds']} s, embedded run {result['embedded_seconds']} s")
    typer.echo(f"same decisions: {result['same_decisions']}; written: {work / 'rehearsal.json'}")
    if not result["same_decisions"]:
        raise typer.Exit(code=ExitCode.FAILED)
