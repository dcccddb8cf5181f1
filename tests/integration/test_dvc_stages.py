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


def test_the_plots_read_a_real_training_history_and_roc(tmp_path, tiny_world):
    """`dvc plots show` renders the train stage's per-epoch history and the evaluate stage's ROC: a real
    two-epoch training and `cscnn evaluate --roc` write the files the plots name, and DVC itself (with the
    project's plot definitions) reads them."""
    import itertools
    import json
    import subprocess
    import sys

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    plots = {name: plot for p in spec["plots"] for name, plot in p.items()}
    ((card_path, fields),) = plots["learning_curve"]["y"].items()
    ((roc_path, roc_field),) = plots["roc"]["y"].items()
    outs = [str(o) for stage in spec["stages"].values() for o in stage.get("outs", [])]
    out_var = spec["vars"][0]["out"]
    assert card_path.startswith(f"{out_var}/model/") and "${out}/model" in outs
    assert roc_path == f"{out_var}/roc.json" and "--roc ${out}/roc.json" in spec["stages"]["evaluate"]["cmd"]
    cli = Path(sys.executable).parent
    out = tmp_path / card_path.rsplit("/", 1)[0]
    train = [str(cli / "cscnn"), "train", "--data", str(tiny_world), "--profile", "tiny", "--out", str(out)]
    subprocess.run([*train, "--set", "train.epochs=2", "--set", "train.patience=5", "--quiet"], check=True)
    evaluate = [str(cli / "cscnn"), "evaluate", "--data", str(tiny_world), "--model", str(out)]
    subprocess.run([*evaluate, "--roc", str(tmp_path / roc_path)], check=True, capture_output=True)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": spec["plots"]}))
    env = {"DVC_NO_ANALYTICS": "1", "PATH": str(cli)}
    subprocess.run([str(cli / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    shown = subprocess.run(
        [str(cli / "dvc"), "plots", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    rendered = json.loads(shown.stdout)["data"]
    assert set(rendered) >= {"learning_curve", "roc"}, list(rendered)
    text = json.dumps(rendered)
    assert "val_auc" in text and "train_loss" in text and roc_field in text and "fpr" in text
    history = json.loads((out / card_path.rsplit("/", 1)[1]).read_text())
    assert history == json.loads((out / "model.json").read_text())["history"]  # the card's, alone
    assert [row["epoch"] for row in history] == [1, 2] and all(set(fields) <= set(row) for row in history)
    roc = json.loads((tmp_path / roc_path).read_text())
    assert (
        2 <= len(roc) <= 101
        and roc[0]["fpr"] == 0.0
        and roc[-1] == {"fpr": 1.0, "threshold": roc[-1]["threshold"], "tpr": 1.0}
    )
    assert all(a["fpr"] <= b["fpr"] and a["tpr"] <= b["tpr"] for a, b in itertools.pairwise(roc))


def test_dvc_lock_is_current():
    """`dvc.lock` (committed) records the command, code, settings and data each stage last ran with. `dvc status`
    in this checkout names every stage whose command, code dependencies or parameters changed since: then the
    lock is stale, and `make lock` (`dvc repro`, a few minutes) renews it. Data and outputs are absent from a
    clean clone (DVC calls them deleted): that is not staleness."""
    import json
    import subprocess
    import sys

    assert (ROOT / "dvc.lock").is_file(), "dvc.lock is not in the checkout: run `make lock` and commit it"
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) == set(_stages()), "dvc.lock's stages are not dvc.yaml's: run `make lock`"
    cli = Path(sys.executable).parent
    env = {"DVC_NO_ANALYTICS": "1", "PATH": f"{cli}:/usr/bin:/bin"}
    status = subprocess.run(
        [str(cli / "dvc"), "status", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr
    stale = []
    for stage, changes in json.loads(status.stdout or "{}").items():
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                stale.append(f"{stage}: {change}")
                continue
            for path, what in change.get("changed deps", {}).items():
                if what != "deleted":  # a dependency present and different (a params file: a dict of keys)
                    stale.append(f"{stage}: {path} {what}")
    assert not stale, "dvc.lock is stale (run `make lock` and commit dvc.lock):\n" + "\n".join(stale)
