"""Fixtures shared by every test module, and the test tiers.

Tiers: `make test-fast` runs everything not marked `slow` (the inner loop; its measured time is in
docs/architecture.md "Tests"); `make test` runs all, including the tests that start a real tool in a
subprocess (`kfp.local`, `airflow dags test`, `bentoml serve`, the fault suite's killed runs). Each
component is still covered for real by the full run, which CI runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cscnn.config import Config, load_config
from cscnn.data.synth import generate_world


@pytest.fixture
def tiny_config() -> Config:
    """The tiny profile's config, fresh for each test (a test may change it): seconds to train."""
    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The tiny profile's synthetic world, generated once per test session. Read-only: a test that changes
    a world copies it first (`shutil.copytree`)."""
    path = tmp_path_factory.mktemp("tiny-world") / "world"
    generate_world(load_config("tiny").world, path)
    return path
