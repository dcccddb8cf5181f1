"""The `cscnn` command as a script sees it: `--version`, exit codes that tell a wrong call, rejected data, a
candidate the gate kept out and a broken run apart, progress bars only on a terminal, and no library warning
printed to its users (the local pipeline runner's included)."""

import os
import subprocess
import sys
import warnings
from importlib.metadata import version

import pytest
from kfp import dsl
from typer.testing import CliRunner

from cscnn.cluster import IMAGE
from cscnn.daily import status
from cscnn.entrypoints import orchestration
from cscnn.entrypoints.cli import app
from cscnn.entrypoints.cli.options import EPILOG, ExitCode, show_progress
from cscnn.state import State
from kfp_pipelines import runner


def test_version_and_the_exit_codes_in_the_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"cscnn {version('cscnn-ctr')}"
    assert [code.value for code in ExitCode] == [0, 1, 2, 3, 4]
    assert "3 rejected" in EPILOG and "4 not promoted" in EPILOG
    assert "not promoted" in CliRunner().invoke(app, ["--help"]).output


def test_a_wrong_call_exits_2():
    assert CliRunner().invoke(app, ["train", "--no-such-flag"]).exit_code == ExitCode.USAGE
    bad = CliRunner().invoke(app, ["gate", "--evaluation", "missing.json", "--out", "x.json"])
    assert bad.exit_code == ExitCode.USAGE and "cannot read the evaluation" in bad.output


def test_validate_exits_3_when_the_day_is_rejected(tiny_world, tmp_path):
    missing_day = ["validate", "--data", str(tiny_world), "--day", "2030-01-01", "--out", str(tmp_path / "v")]
    result = CliRunner().invoke(app, [*missing_day, "--profile", "tiny", "--state", str(tmp_path / "state")])
    assert result.exit_code == ExitCode.REJECTED, result.output


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (orchestration.DayRejected("day 2026-01-03 rejected by data validation"), ExitCode.REJECTED),
        (orchestration.NotRetryable("day 2026-01-03 has not landed"), ExitCode.USAGE),
        (RuntimeError("day 2026-01-03 failed at step train-candidate: boom"), ExitCode.FAILED),
        (status.DayStatus.NOT_PROMOTED, ExitCode.NOT_PROMOTED),
        (status.DayStatus.PROMOTED, ExitCode.OK),
    ],
)
def test_daily_run_exit_code_says_how_the_day_ended(monkeypatch, tmp_path, outcome, code):
    def run_day(pipeline, arguments, force, hint):
        if isinstance(outcome, Exception):
            raise outcome
        status.mark(State(tmp_path), arguments["day"], status=outcome)
        return {"arguments": arguments, "run": {}}

    monkeypatch.setattr(orchestration, "run_day", run_day)
    args = ["daily", "run", "--day", "2026-01-03", "--landing", str(tmp_path), "--state", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output


def test_progress_bars_only_on_a_terminal():
    assert not sys.stderr.isatty() or os.environ.get("PYTEST_XDIST_WORKER")  # pytest captures stderr
    assert show_progress(True) is False and show_progress(False) is False


def test_the_registered_pyfunc_class_raises_no_mlflow_warning():
    """MLflow warns (in ANSI colours) at the definition of a PythonModel whose `predict` has no type hints:
    once per process that imports the registry, `cscnn model list` included."""
    from mlflow.pyfunc import PythonModel

    from cscnn.tools.model_registry import CTRPyfunc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        type("Hinted", (CTRPyfunc,), {})
        assert caught == []
        type("Unhinted", (PythonModel,), {"predict": lambda self, context, model_input, params=None: None})
        assert caught, "MLflow no longer warns about a predict without hints: this test checks nothing"


def test_model_list_prints_no_library_warning(tmp_path):
    env = {**os.environ, "CSCNN_STATE": str(tmp_path), "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    cscnn = [sys.executable, "-c", "from cscnn.entrypoints.cli import app; app()"]
    result = subprocess.run([*cscnn, "model", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "\x1b[" not in result.stdout, result.stderr


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def _hello() -> str:
    return "hello"


@dsl.pipeline(name="hello")
def _hello_pipeline(day: str, state_dir: str) -> None:
    _hello().set_cpu_limit("1")


def test_the_local_runner_says_once_what_kfp_warns_on_every_task(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(runner.PIPELINES, "hello", _hello_pipeline)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.run_local("hello", {"day": "2026-01-03", "state_dir": str(tmp_path)})
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning | UserWarning)] == []
    assert capsys.readouterr().out.count(f"not in {IMAGE}") == 1
