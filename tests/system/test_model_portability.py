"""A registered version loads anywhere: its requirements.txt pins what the pyfunc imports (no `cscnn-ctr`, which
no index has), the package's source travels in `code/`, the input example names no local file. Its run holds
the learning curve (metrics per epoch) and the DVC data version as its input dataset; the registered model has
a description and the version a model card.

Most tests load the model in this process; one builds a clean virtualenv from the model's
own requirements.txt and loads it there, as another machine would."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cscnn.daily.steps import input_example
from cscnn.data.io import open_world
from cscnn.state import State
from cscnn.tools import model_registry
from cscnn.training.train import train

DATA_VERSION = "2026-01-04@0123456789"


@pytest.fixture(scope="module")
def logged(tiny_with, tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("portable")
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    state = State(root / "state")
    world = open_world(tiny_world)
    cfg = tiny_with("train.epochs=2", "train.patience=5")
    train(world, cfg, out=root / "model", progress=False)
    example = input_example(world, world.days[-1])
    decision = {"passed": False, "reasons": ["auc_floor: 0.51 < 0.60"]}
    ref = model_registry.log_candidate(
        root / "model",
        {"auc": 0.51},
        {},
        DATA_VERSION,
        state=state,
        input_example=example,
        decision=decision,
        tags={"day": world.days[-1]},
    )
    import mlflow

    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{ref.name}/{ref.version}", dst_path=str(root / "m")))
    yield {"ref": ref, "state": state, "model_dir": model_dir, "example": example, "root": root}
    mp.undo()


def test_the_version_names_the_day_it_was_gated_on(logged):
    """The gate's day_order check reads it from the version (`ModelRef.day`), not from the run."""
    from cscnn.tools import model_registry

    ref = logged["ref"]
    assert ref.day is not None and ref.day.startswith("20")
    assert model_registry.get_version(ref.version, logged["state"], ref.name).day == ref.day


def test_the_model_pins_what_it_imports_and_carries_its_code(logged):
    model_dir = logged["model_dir"]
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert requirements == model_registry.pyfunc_requirements()
    assert all("==" in line and "+" not in line for line in requirements)
    assert not [line for line in requirements if line.startswith("cscnn")]
    assert (model_dir / "code" / "cscnn" / "tools" / "model_registry.py").is_file()
    assert (model_dir / "code" / "cscnn" / "profiles.yaml").is_file()
    assert not list((model_dir / "code").rglob("__pycache__"))


def test_the_input_example_names_no_local_file_and_the_model_scores_it(logged):
    import mlflow

    model_dir = logged["model_dir"]
    text = (model_dir / "serving_input_example.json").read_text()
    assert str(logged["root"]) not in text and "/tmp" not in text and ".png" not in text
    example = mlflow.models.Model.load(model_dir).load_input_example(str(model_dir))
    assert list(example.columns) == list(logged["example"].columns)
    probabilities = mlflow.pyfunc.load_model(str(model_dir)).predict(example)
    assert len(probabilities) == len(example) and ((probabilities > 0) & (probabilities < 1)).all()


def test_the_pyfunc_requirements_cover_its_imports():
    """What loading and scoring import (outside the standard library and this package) comes from the listed
    distributions or from their own dependencies, never from another distribution the project declares."""
    code = textwrap.dedent(
        """
        import json, sys
        from importlib.metadata import packages_distributions, requires
        import cscnn.training.checkpoint, cscnn.models, cscnn.data.images, cscnn.data.schema
        names = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {"cscnn"}
        dists = {d.lower() for n in names for d in packages_distributions().get(n, [])}
        declared = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                    for r in requires("cscnn-ctr")}
        print(json.dumps(sorted(dists & declared)))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    imported = set(json.loads(out.stdout))
    assert imported <= {name.lower() for name in model_registry.PYFUNC_REQUIREMENTS}, (
        imported
    )  # mlflow-skinny: loads it
    assert {"torch", "numpy", "pandas", "pillow"} <= imported


def test_the_run_has_the_learning_curve_the_data_version_and_cards(logged):
    ref, state = logged["ref"], logged["state"]
    client = model_registry.client(state)
    history = client.get_metric_history(ref.run_id, "epoch_val_auc")
    assert [m.step for m in history] == [1, 2]
    run = client.get_run(ref.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest, dataset.source_type) == (DATA_VERSION, "0123456789", "dvc")
    assert json.loads(dataset.source)["commit"] == "0123456789"
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert "pyfunc" in client.get_registered_model(ref.name).description
    card = client.get_model_version(ref.name, ref.version).description
    assert DATA_VERSION in card and ref.fingerprint in card and "variant `cscnn`" in card
    assert "auc 0.5100" in card and "Gate** fail: auc_floor" in card


def test_the_model_loads_in_a_clean_virtualenv_from_its_own_requirements(logged, tmp_path):
    model_dir, venv = logged["model_dir"], tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    # --no-compile: no bytecode written ahead for every file of torch (66 s -> 25 s here); imports compile what they use
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        "-r",
        str(model_dir / "requirements.txt"),
    ]
    subprocess.run(pip, check=True, timeout=900, env=env, cwd=tmp_path)
    score = textwrap.dedent(
        f"""
        import importlib.util, json, mlflow
        assert importlib.util.find_spec("cscnn") is None  # only the model's own code/ brings it
        model_dir = {str(model_dir)!r}
        example = mlflow.models.Model.load(model_dir).load_input_example(model_dir)
        print(json.dumps([float(p) for p in mlflow.pyfunc.load_model(model_dir).predict(example)]))
        """
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", score], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(json.loads(out.stdout.strip().splitlines()[-1])) == len(logged["example"])
