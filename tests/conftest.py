"""Fixtures shared by every test module, and the test tiers.

The tiers are the folders, each a marker of the same name (set here, so `-m unit` works too):

    tests/unit         the library in this process: no server, no subprocess of a tool (`make test-fast`)
    tests/integration  one real tool at a time: Great Expectations, DVC, MLflow, `bentoml serve`, torchrun,
                       Airflow's DAG parsing and setup, `kubectl kustomize`, a kfp.local run that stops early
    tests/system       the whole loop: the daily pipeline on kfp.local day after day, the fault suite's
                       killed runs, `airflow dags test`, the cluster rehearsal, the model in a clean virtualenv

`make test` runs the three on two workers (pytest-xdist, one test file per worker at a time: a module's
fixtures are built once); their measured times are in docs/architecture.md "Tests".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cscnn.config import Config, load_config
from cscnn.data.synth import generate_world

TIERS = ("unit", "integration", "system")
# The longest files (minutes each), started first: `make test` hands whole files to two workers in this order
# (`--no-loadscope-reorder`), and the short ones fill in after them, so that both workers finish together.
LONGEST_FIRST = (
    "system/test_rehearsal.py",
    "system/test_faults.py",
    "system/test_daily_pipeline.py",
    "system/test_model_portability.py",
    "system/test_airflow_run.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it is in (a test file outside the tier folders is an error), and
    put the longest files first; the rest keep their order (system, integration, unit: `testpaths`)."""
    root = Path(__file__).parent
    for item in items:
        tier = Path(item.path).relative_to(root).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.path}: a test file belongs in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.path).relative_to(root).as_posix(), len(rank)))


@pytest.fixture(scope="session")
def tiny_with() -> Callable[..., Config]:
    """The tiny profile's config with overrides, `tiny_with("train.epochs=1", ...)`: a fresh object on each call
    (a test may change it), seconds to train."""

    def make(*overrides: str) -> Config:
        return load_config("tiny", overrides=list(overrides))

    return make


@pytest.fixture
def tiny_config(tiny_with) -> Config:
    """The tiny profile's config, fresh for each test."""
    return tiny_with()


@pytest.fixture(scope="session")
def tiny_world(tiny_with, tmp_path_factory) -> Path:
    """The tiny profile's synthetic world, generated once per test session (per worker under xdist). Read-only:
    a test that changes a world copies it first (`shutil.copytree`)."""
    path = tmp_path_factory.mktemp("tiny-world") / "world"
    generate_world(tiny_with().world, path)
    return path
