"""The fault suite: the daily loop is serialised per state folder and crash-consistent (issue 10).

Real runs of `cscnn daily run` (kfp.local, DVC, MLflow on SQLite, `bentoml serve`) on the tiny profile, each in its
own process group, killed with SIGKILL at a chosen point by the test hook `tests/helpers/crash_site` (on
PYTHONPATH, so kfp.local's step processes load it too). One state, in order:

    days 1 + 2   two runs started together: the second waits for the first's lock
    day 3        killed while versioning -> the next run starts from the registry's last commit
                 killed while training, then while registering (version created, run open), then during the
                 package check (its `bentoml serve` up): each next run cleans up after the killed one
                 (slow) a forced rerun trains the same model again on the same data and reuses its version

After it: no half-made model version, no RUNNING MLflow run, no live server; the champion's data version holds
every day it was validated against.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cscnn import locks
from cscnn.daily.status import DayStatus
from cscnn.data.io import list_days
from cscnn.state import State

HELPERS = Path(__file__).parents[1] / "helpers"
CRASH_SITE = HELPERS / "crash_site"
CSCNN = str(Path(sys.executable).parent / "cscnn")
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
LENIENT = ["--set", "gate.auc_floor=0.5", "--set", "gate.max_auc_drop=1", "--set", "gate.max_category_drop=1"]
RUN_TIMEOUT = 300
KILLED = -signal.SIGKILL


def _env(state: State, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "KFP_HOST", "CSCNN_TEST_CRASH"}}
    env.update(CSCNN_STATE=str(state.root), PYTHONPATH=os.pathsep.join([str(CRASH_SITE), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _start(state: State, landing: Path, day: str, log: Path, *args: str, **env: str) -> subprocess.Popen:
    command = [CSCNN, "daily", "run", "--day", day, "--landing", str(landing), "--profile", "tiny", *LENIENT, *args]
    with log.open("w") as out:
        return subprocess.Popen(
            command, env=_env(state, **env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _run(state: State, landing: Path, day: str, log: Path, *args: str, **env: str) -> dict:
    proc = _start(state, landing, day, log, *args, **env)
    try:
        code = proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return {"code": code, "log": log.read_text()}


def _task_times(log: str) -> list[str]:
    """kfp.local's HH:MM:SS.mmm stamps of its task lines: when the run's steps ran."""
    return re.findall(r"^(\d\d:\d\d:\d\d\.\d\d\d) - INFO - (?:Executing task|Task )", log, flags=re.M)


def _servers(state: State) -> list[int]:
    """Live processes of a smoke check's `bentoml serve` for this state: its arbiter (which renames itself
    `circusd`) and workers, told apart by their environment (the state's BENTOML_HOME and a model version)."""
    home = f"BENTOML_HOME={state.bentoml_home}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if home in environ and any(entry.startswith(b"CSCNN_MODEL_VERSION=") for entry in environ):
            pids.append(int(proc.name))
    return pids


def _wait_no_servers(state: State, seconds: float = 30.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _servers(state)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _registry(state: State) -> dict:
    """Every version of the model with its tags and aliases, and the status of every MLflow run."""
    from cscnn.tools import model_registry

    client = model_registry.client(state)
    versions = {}
    for mv in client.search_model_versions("name = 'cscnn-ctr'"):
        full = client.get_model_version("cscnn-ctr", mv.version)
        versions[str(mv.version)] = {"tags": dict(full.tags), "aliases": list(full.aliases), "run_id": full.run_id}
    experiment = client.get_experiment_by_name(model_registry.EXPERIMENT)
    runs = {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}
    return {"versions": versions, "runs": runs}


def _proc_start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def _git(registry: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=registry, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def faults(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    state, landing, logs = State(root / "state"), tiny_world, root
    results: dict = {"state": state}
    try:
        first = _start(state, landing, DAYS[0], logs / "day1.log")
        deadline = time.monotonic() + 60
        while locks.read_holder(state.root) is None and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _start(state, landing, DAYS[1], logs / "day2.log")
        results["concurrent"] = [
            {"code": proc.wait(timeout=RUN_TIMEOUT), "log": log.read_text()}
            for proc, log in ((first, logs / "day1.log"), (second, logs / "day2.log"))
        ]

        day = DAYS[2]
        results["version"] = _run(state, landing, day, logs / "version.log", CSCNN_TEST_CRASH="version")
        world = state.registry_world
        results["version_left"] = {"days": list_days(world), "head": _git(state.data_registry, "log", "--format=%s")}
        out = root / "probe.json"
        probe = [sys.executable, str(HELPERS / "faults.py"), str(state.root), str(landing), day, "0", str(out)]
        subprocess.run(probe, env=_env(state), check=True, timeout=RUN_TIMEOUT)
        results["probe"] = json.loads(out.read_text())

        results["train"] = _run(state, landing, day, logs / "train.log", CSCNN_TEST_CRASH="train")
        results["register"] = _run(state, landing, day, logs / "register.log", CSCNN_TEST_CRASH="register")
        results["after_register"] = _registry(state)
        results["package"] = _run(state, landing, day, logs / "package.log", CSCNN_TEST_CRASH="package")
        results["package_servers"] = _wait_no_servers(state)
        results["after_package"] = _registry(state)
        results["logs"] = logs
        yield results
    finally:
        for pid in _servers(state):  # never leave a server behind, even when a check failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_two_concurrent_runs_on_one_state_serialise(faults):
    first, second = faults["concurrent"]
    assert first["code"] == 0, first["log"][-3000:]
    assert second["code"] == 0, second["log"][-3000:]
    assert "waiting up to" in second["log"] and f"(daily {DAYS[0]})" in second["log"]
    # the second run's steps all ran after the first run's last step
    assert max(_task_times(first["log"])) < min(_task_times(second["log"]))


def test_a_run_on_a_locked_state_fails_at_once_naming_the_holder(tiny_world, tmp_path):
    state = State(tmp_path / "state")
    with locks.state_lock(state.root, f"daily {DAYS[2]}"):
        command = [CSCNN, "daily", "run", "--day", DAYS[0], "--landing", str(tiny_world), "--profile", "tiny"]
        proc = subprocess.run(command, env=_env(state, CSCNN_LOCK_WAIT="0"), capture_output=True, text=True)
    assert proc.returncode != 0
    message = [line for line in proc.stderr.splitlines() if "locked" in line]
    assert len(message) == 1, proc.stderr
    for part in (f"pid {os.getpid()}", f"on host {os.uname().nodename}", f"(daily {DAYS[2]})", "since "):
        assert part in message[0], message[0]
    assert not state.day_status_file(DAYS[0]).exists()  # nothing ran
    assert locks.read_holder(state.root) is None  # released cleanly


def test_a_killed_versioning_is_undone_before_the_next_run_reads_the_registry(faults):
    assert faults["version"]["code"] == KILLED, faults["version"]["log"][-3000:]
    left = faults["version_left"]
    assert DAYS[2] in left["days"] and f"data: day {DAYS[2]}" not in left["head"]  # the kill left a half-made day
    probe = faults["probe"]
    assert probe["registry_days"] == DAYS[:2], probe
    assert probe["registry_dirty"] == "", probe


def test_kill_during_training_then_during_registration_leaves_no_half_made_version(faults):
    assert faults["train"]["code"] == KILLED, faults["train"]["log"][-3000:]
    assert faults["register"]["code"] == KILLED, faults["register"]["log"][-3000:]
    # the registration was killed with the version created and its run open: what the next run must undo
    orphans = faults["after_register"]["versions"]
    assert len(orphans) == 1, orphans  # (seen once with 2 under a load average of 5: kept loud to diagnose)
    assert "RUNNING" in faults["after_register"]["runs"].values(), faults["after_register"]["runs"]
    [(orphan, _)] = orphans.items()
    after = faults["after_package"]
    assert orphan not in after["versions"], "the next run deleted the half-registered version"
    assert faults["after_register"]["versions"][orphan]["run_id"] in after["runs"]
    assert after["runs"][orphans[orphan]["run_id"]] == "FAILED"
    assert "RUNNING" not in after["runs"].values()


def test_crash_during_the_package_check_leaves_no_server(faults):
    assert faults["package"]["code"] == KILLED, faults["package"]["log"][-3000:]
    assert faults["package_servers"] == []  # it got SIGTERM when its owner died
    from cscnn.tools.packaging import stop_stale_servers

    # the killed owner could not remove the server's record: the next run's sweep forgets it, nothing to stop
    assert stop_stale_servers(faults["state"]) == []
    assert not any(faults["state"].servers.glob("*.json"))


def test_the_next_run_stops_a_server_whose_owner_was_killed(tmp_path):
    """The second line of defence (no parent-death signal, e.g. the server detached itself): the record."""
    from cscnn.tools.packaging import _record_server, stop_stale_servers

    state = State(tmp_path / "state")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        record = _record_server(state.servers, server.pid, "cscnn-ranker:test", "http://127.0.0.1:1")
        info = json.loads(record.read_text())
        record.write_text(json.dumps({**info, "owner": owner.pid, "owner_start": _proc_start(owner.pid)}))
        assert stop_stale_servers(state) == []  # its owner still runs: left alone
        owner.kill()
        owner.wait()
        assert stop_stale_servers(state) == [server.pid]
        assert server.wait(timeout=20) == -signal.SIGTERM
        assert not record.exists()
    finally:
        for proc in (owner, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_the_registry_is_consistent_after_the_crashes(faults):
    """After kills in training, registration and packaging: every version complete, no run left RUNNING."""
    after = faults["after_package"]
    assert len(after["versions"]) == 1, after
    [(_, info)] = after["versions"].items()
    assert info["tags"]["registration"] == "complete" and info["tags"]["fingerprint"] and info["tags"]["embeddings"]
    assert "RUNNING" not in after["runs"].values()


def test_registering_the_same_fingerprint_on_the_same_data_reuses_the_version(faults):
    from cscnn.tools import model_registry

    state = faults["state"]
    [(version, info)] = faults["after_package"]["versions"].items()
    checkpoint, _ = model_registry.fetch(model_registry.get_version(version, state), state)
    ref = model_registry.log_candidate(checkpoint, {"auc": 0.5}, {}, info["tags"]["data_version"], state=state)
    assert ref.version == version
    assert _registry(state)["versions"].keys() == {version}


def test_forced_rerun_trains_the_same_fingerprint_and_registers_no_duplicate(faults, tiny_world):
    state, before = faults["state"], faults["after_package"]
    rerun = _run(state, tiny_world, DAYS[2], faults["logs"] / "rerun.log", "--force")
    assert rerun["code"] == 0, rerun["log"][-4000:]
    final = _registry(state)
    assert final["versions"].keys() == before["versions"].keys(), "the rerun reused the version"
    [(version, info)] = final["versions"].items()
    assert info["tags"]["registration"] == "complete"
    assert "champion" in info["aliases"] and "challenger" in info["aliases"]
    assert "RUNNING" not in final["runs"].values()
    assert _servers(state) == []
    record = json.loads(state.day_status_file(DAYS[2]).read_text())
    assert record["status"] == DayStatus.PROMOTED and record["champion"] == version
    # the champion's data version holds every day it was validated against
    data_commit = info["tags"]["data_version"].split("@")[1]
    tracked = _git(state.data_registry, "ls-tree", "-r", "--name-only", data_commit, "world/impressions")
    assert all(f"world/impressions/{day}.parquet.dvc" in tracked for day in DAYS)


def test_a_package_failure_shows_the_server_s_own_error(tmp_path):
    from cscnn.tools.packaging import BentoServer, PackagingError, bentoml_env

    (tmp_path / "broken_service.py").write_text('raise RuntimeError("cscnn-fault: the model store is unreachable")\n')
    server = BentoServer("broken_service:Service", bentoml_env(tmp_path / "bentoml"), tmp_path, timeout=60)
    with pytest.raises(PackagingError) as failure, server:
        pass
    assert "exited with code" in str(failure.value)
    assert "cscnn-fault: the model store is unreachable" in str(failure.value)
