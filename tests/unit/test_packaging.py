"""What pyproject.toml promises a user who installs the project: each extra brings what its commands run
(tests/unit/test_architecture.py checks the imports; this file the tools run as programs), torch as a range with the
exact pin in the constraints file, and a command whose extra is missing says which one to install."""

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cscnn.entrypoints.cli import app

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _requirement(group: list[str], name: str) -> str:
    (found,) = [r for r in group if re.match(rf"{re.escape(name)}(\[|[<>=!~; ]|$)", r)]
    return found


def test_torch_is_a_range_and_the_constraints_file_pins_it():
    """A library does not pin torch; the constraints file does (a newer torch downloads GBs of CUDA wheels)."""
    torch = _requirement(PROJECT["dependencies"], "torch")
    assert "==" not in torch and ">=" in torch, torch
    pins = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins


def test_the_tools_commands_run_as_programs_come_with_their_extra():
    assert _requirement(EXTRAS["serve"], "uv")  # `bentoml build`, the package step (cscnn.tools.packaging)
    assert _requirement(EXTRAS["rehearsal"], "moto").startswith("moto[server]")  # `python -m moto.server`
    assert _requirement(EXTRAS["photos"], "scikit-image")  # only `cscnn data photo-amazon` needs it
    assert not [r for r in PROJECT["dependencies"] if r.startswith("scikit-image")]
    assert not [r for r in EXTRAS["dev"] if re.match(r"(uv|moto)\b", r)]
    (everything,) = EXTRAS["all"]
    assert set(re.search(r"\[(.*)\]", everything).group(1).split(",")) == set(EXTRAS) - {"all"}


@pytest.mark.parametrize(
    ("args", "module", "extra"),
    [
        (["data", "photo-amazon", "--out", "unused"], "skimage", "photos"),
        (["rehearsal", "--work", "unused"], "moto", "rehearsal"),
    ],
)
def test_a_command_whose_extra_is_missing_names_it(monkeypatch, args, module, extra):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and f"pip install 'cscnn-ctr[{extra}]'" in result.output, result.output
    assert not Path("unused").exists()
