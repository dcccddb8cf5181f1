"""Config resolution and the tools built on the library: compare's table, the throughput benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cscnn.config import load_config
from cscnn.data.io import open_world
from cscnn.data.synth import generate_world
from cscnn.errors import ConfigError
from cscnn.training.compare import run_comparison, write_results

ROOT = Path(__file__).parents[2]


def test_profile_then_file_then_overrides(tmp_path) -> None:
    config_file = tmp_path / "my.yaml"
    config_file.write_text("train:\n  epochs: 5\n  lr: 0.01\nmodel:\n  visual_dim: 24\n")
    cfg = load_config("tiny", config_file, ["train.epochs=7", "train.dedup=false", "model.deep_layers=[8, 4]"])
    assert cfg.world.n_items == 40  # from the tiny profile
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.visual_dim) == (7, 0.01, 24)
    assert cfg.train.dedup is False and cfg.model.deep_layers == [8, 4]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochs=three"], "cannot use 'three' \\(expected int\\)"),
        (["train.nope=1"], "unknown key 'nope'"),
        (["epochs=1"], "must look like section.key=value"),
        (["model.variant=resnet"], "choose one of"),
        (["model.image_size=48"], "multiple of 8 x model.stem_stride"),
        (["model.conv_channels=[8, 8]"], "needs 5 positive widths"),
        (["train.batch_size=0"], "must be >= 1"),
    ],
)
def test_bad_settings_name_the_setting(tiny_with, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_with(*overrides)


def test_unknown_profile_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("tiny", Path("/nonexistent.yaml"))


@pytest.fixture(scope="module")
def tiny_world(tiny_with, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tools") / "world"
    generate_world(tiny_with().world, path)
    return path


def test_compare_writes_the_table_with_its_command(tiny_with, tiny_world, tmp_path) -> None:
    world = open_world(tiny_world)
    cfg = tiny_with("train.epochs=1")
    rows = run_comparison(world, cfg, ["no_image", "cscnn"], [0, 1], progress=False)
    assert [(r["variant"], r["seed"]) for r in rows] == [("no_image", 0), ("no_image", 1), ("cscnn", 0), ("cscnn", 1)]
    out = tmp_path / "results.md"
    write_results(rows, out, "cscnn compare --seeds 2", world, cfg)
    table = out.read_text()
    assert "`cscnn compare --seeds 2`" in table
    assert "| no_image | " in table and "| cscnn | " in table and " ± " in table
    assert "paired by seed" in table
    assert any(line.startswith("| cscnn | ") and "/2)" in line for line in table.splitlines())
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == json.loads(json.dumps(rows))
    with pytest.raises(Exception, match="at least one variant and one seed"):
        run_comparison(world, cfg, ["cscnn"], [], progress=False)


def test_throughput_benchmark_runs_and_saves(tiny_world, tmp_path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/train_throughput.py", "--profile", "tiny", "--data", str(tiny_world)]
    cmd += ["--steps", "2", "--variants", "cscnn", "--paths", "streamed,memory", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["dedup"], r["data_path"]) for r in rows] == [(True, "streamed"), (False, "streamed"), (True, "memory")]
    assert "end to end, loading included" in done.stdout
    assert rows[0]["cnn_images_per_batch"] < rows[1]["cnn_images_per_batch"] == rows[1]["batch_size"]
    assert "speedup from dedup" in done.stdout


def test_a_registry_client_does_not_pin_later_states_to_its_own(tmp_path, monkeypatch):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; State.tracking_uri reads it as the user's setting.
    from cscnn.state import State
    from cscnn.tools import model_registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model_registry.client(State(tmp_path / "a"))
    assert State(tmp_path / "b").tracking_uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + str(tmp_path / "server.db"))  # a user's setting wins
    model_registry.client(State(tmp_path / "c"))
    assert State(tmp_path / "d").tracking_uri == "sqlite:///" + str(tmp_path / "server.db")
