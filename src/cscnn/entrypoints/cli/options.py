"""What every `cscnn` subcommand shares: option types, the exit codes and the one-line error exit."""

from __future__ import annotations

import importlib.util
import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import Annotated

import typer

from cscnn.errors import ConfigError, DataContractError, RunFailure
from cscnn.settings import profile_list

Profile = Annotated[str, typer.Option(help=f"Config profile (cscnn/profiles.yaml): {profile_list()}.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file overriding the profile.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set train.epochs=3 (repeatable)."),
]
DataDir = Annotated[Path, typer.Option("--data", help="World folder (see docs/data_contract.md).")]
ModelDir = Annotated[Path, typer.Option("--model", help="Checkpoint folder written by `cscnn train`.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars (none either when stderr is not a terminal).")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, or cuda[:N].")]
StateDir = Annotated[Path | None, typer.Option("--state", help="State folder (default: $CSCNN_STATE or ./.state).")]


class ExitCode(IntEnum):
    """What a `cscnn` command's exit status means (README "Exit codes"), so that a script can tell apart a
    mistake in the call, data the loop refused, a candidate the gate kept out, and a run that broke."""

    OK = 0
    FAILED = 1  # the run failed: a step, a tool or a service (RunFailure), or a bug (a traceback)
    USAGE = 2  # the call is wrong: a flag or option (Click's code), a config, an unusable input, a missing extra
    REJECTED = 3  # the data was rejected: validation failed, or the world breaks the data contract
    NOT_PROMOTED = 4  # the day ran to its decision and the gate kept the champion


EPILOG = "Exit codes: " + ", ".join(f"{code.value} {code.name.lower().replace('_', ' ')}" for code in ExitCode) + "."


def exit_code(exc: Exception) -> ExitCode:
    if isinstance(exc, DataContractError):
        return ExitCode.REJECTED
    return ExitCode.FAILED if isinstance(exc, RunFailure) else ExitCode.USAGE


def fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=exit_code(exc))


def print_json(data: dict) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def require(modules: tuple[str, ...], extra: str, command: str) -> None:
    """Fail in one line naming the extra to install when an optional dependency of `command` is missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        fail(ConfigError(f"{command} needs {', '.join(missing)}: pip install 'cscnn-ctr[{extra}]'"))


def show_progress(requested: bool) -> bool:
    """Progress bars only on a terminal: in a log file (Airflow, CI, `dvc repro > log`) they are noise."""
    return requested and sys.stderr.isatty()
