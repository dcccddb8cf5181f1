"""What every `cscnn` subcommand shares: option types and the one-line error exit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer

from cscnn.errors import ConfigError

Profile = Annotated[str, typer.Option(help="Config profile: tiny (tests), small (demo), bench.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file overriding the profile.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set train.epochs=3 (repeatable)."),
]
DataDir = Annotated[Path, typer.Option("--data", help="World folder (see docs/data_contract.md).")]
ModelDir = Annotated[Path, typer.Option("--model", help="Checkpoint folder written by `cscnn train`.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, or cuda[:N].")]
StateDir = Annotated[Path | None, typer.Option("--state", help="State folder (default: $CSCNN_STATE or ./.state).")]


def fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def print_json(data: dict) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def require(modules: tuple[str, ...], extra: str, command: str) -> None:
    """Fail in one line naming the extra to install when an optional dependency of `command` is missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        fail(ConfigError(f"{command} needs {', '.join(missing)}: pip install 'cscnn-ctr[{extra}]'"))
