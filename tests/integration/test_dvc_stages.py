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

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_learning_curve_plot_reads_a_real_training_history(tmp_path, tiny_world):
    """`dvc plots show learning_curve` renders the train stage's per-epoch history: a real two-epoch training
    writes the history file the plot names, and DVC itself (with the project's plot definition) reads it."""
    import json
    import subprocess
    import sys

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (plot,) = [p["learning_curve"] for p in spec["plots"] if "learning_curve" in p]
    ((card_path, fields),) = plot["y"].items()
    outs = [str(o) for stage in spec["stages"].values() for o in stage.get("outs", [])]
    assert card_path.startswith(f"{spec['vars'][0]['out']}/model/") and "${out}/model" in outs
    cli = Path(sys.executable).parent
    out = tmp_path / card_path.rsplit("/", 1)[0]
    train = [str(cli / "cscnn"), "train", "--data", str(tiny_world), "--profile", "tiny", "--out", str(out)]
    subprocess.run([*train, "--set", "train.epochs=2", "--set", "train.patience=5", "--quiet"], check=True)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": spec["plots"]}))
    env = {"DVC_NO_ANALYTICS": "1", "PATH": str(cli)}
    subprocess.run([str(cli / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    shown = subprocess.run(
        [str(cli / "dvc"), "plots", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    rendered = json.dumps(json.loads(shown.stdout))
    assert "learning_curve" in rendered and "val_auc" in rendered and "train_loss" in rendered
    history = json.loads((out / card_path.rsplit("/", 1)[1]).read_text())
    assert history == json.loads((out / "model.json").read_text())["history"]  # the card's, alone
    assert [row["epoch"] for row in history] == [1, 2] and all(set(fields) <= set(row) for row in history)
