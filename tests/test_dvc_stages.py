"""`dvc.yaml`: every stage is a `cscnn` command that the CLI accepts as written, and declares the code it runs.

The stages are parsed with the CLI's own parser (click), without running them: a renamed or removed option
fails here rather than in a user's `dvc repro`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from typer.main import get_command

from cscnn.entrypoints.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {k: v for block in spec.get("vars", []) for k, v in block.items()}

    def resolve(text: str) -> str:
        for key, value in variables.items():
            text = text.replace("${" + key + "}", str(value))
        return text

    return {
        name: {"cmd": resolve(stage["cmd"]), "deps": [resolve(d) for d in stage.get("deps", [])]}
        for name, stage in spec["stages"].items()
    }


def test_every_stage_command_parses_with_the_cli():
    root = get_command(app)
    for name, stage in _stages().items():
        argv = shlex.split(stage["cmd"])
        assert argv[0] == "cscnn", f"stage {name}: {stage['cmd']}"
        command, args, path = root, argv[1:], ["cscnn"]
        while hasattr(command, "commands"):  # a group: descend to the subcommand
            path.append(args[0])
            command, args = command.commands[args[0]], args[1:]
        try:
            command.make_context(" ".join(path), list(args))
        except Exception as exc:  # click's usage errors (typer ships its own copy of click)
            raise AssertionError(f"stage {name}: `{stage['cmd']}` is refused by the CLI: {exc}") from exc


def test_every_code_dependency_exists():
    for name, stage in _stages().items():
        for dep in stage["deps"]:
            if dep.startswith("src/"):
                assert (ROOT / dep).exists(), f"stage {name} depends on {dep}, which does not exist"
