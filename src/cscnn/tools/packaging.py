"""Package the ranking service as a bento, and check that a packaged service answers (the pipeline's infra check).

`build_bento` assembles a clean build context in a scratch folder (bento/service.py, bento/bentofile.yaml and a
copy of the `cscnn` package, so the bento carries the library it serves with) and runs `bentoml build` there,
offline: the bentofile pins every requirement and skips the lock step.

`smoke_check` starts `bentoml serve` on a built bento (or on the service source) with one model version,
waits for readiness, sends a canned request and a bad one, checks both answers and the served-version
metric, and stops the server.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import yaml

import cscnn
from cscnn import project
from cscnn.errors import RunFailure
from cscnn.files import write_json
from cscnn.state import State
from cscnn.training.embed import CATALOG_FILE

SERVICE = "service:RankingService"
SMOKE_NEW_ITEM = "smoke-check-new-item"
SMOKE_USER = "smoke-check-user"


class PackagingError(RunFailure):
    """The bento did not build, or the packaged service did not answer as it should."""


@dataclass(frozen=True)
class BuildResult:
    tag: str
    seconds: float
    bentoml_home: Path


def bentoml_env(bentoml_home: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(BENTOML_DO_NOT_TRACK="True", MLFLOW_DISABLE_TELEMETRY="true")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # uv and bentoml of this venv
    if bentoml_home is not None:
        env["BENTOML_HOME"] = str(bentoml_home)
    env.update(extra or {})
    return env


def build_bento(
    bentoml_home: Path | None = None, version: str | None = None, bento_dir: Path | None = None
) -> BuildResult:
    """Build the ranking service's bento into `bentoml_home` (default: the state folder's `bentoml/`), tagged
    `cscnn-ranker:<version>` (generated when not given; an existing build of the same version is replaced).

    Keep `bentoml_home` outside the project: a store inside the build context would be packed into itself.
    """
    bento_dir = Path(bento_dir) if bento_dir is not None else project.bento_dir()
    if not (bento_dir / "bentofile.yaml").is_file():
        raise PackagingError(f"{bento_dir}: no bentofile.yaml (run from a source checkout of the project)")
    bentoml_home = Path(bentoml_home or State.from_env().bentoml_home).resolve()
    started = time.perf_counter()
    if version:  # a rerun of the same version (a retried pipeline step) replaces its earlier build
        name = yaml.safe_load((bento_dir / "bentofile.yaml").read_text())["name"]
        if (bentoml_home / "bentos" / name / version).is_dir():
            subprocess.run(
                [sys.executable, "-m", "bentoml", "delete", f"{name}:{version}", "--yes"],
                env=bentoml_env(bentoml_home),
                capture_output=True,
                check=True,
                timeout=120,
            )
    with tempfile.TemporaryDirectory(prefix="cscnn-bento-") as scratch:
        ctx = Path(scratch)
        for name in ("service.py", "bentofile.yaml"):
            shutil.copy2(bento_dir / name, ctx / name)
        shutil.copytree(
            Path(cscnn.__file__).parent, ctx / "cscnn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        command = [sys.executable, "-m", "bentoml", "build", str(ctx), "--output", "tag"]
        if version:
            command += ["--version", version]
        proc = subprocess.run(
            command, cwd=ctx, env=bentoml_env(bentoml_home), capture_output=True, text=True, timeout=600, check=False
        )
    tags = [line.split("__tag__:", 1)[1].strip() for line in proc.stdout.splitlines() if "__tag__:" in line]
    if proc.returncode != 0 or not tags:
        raise PackagingError(f"bentoml build failed (exit {proc.returncode}): {_tail(proc.stderr or proc.stdout)}")
    return BuildResult(tag=tags[-1], seconds=time.perf_counter() - started, bentoml_home=bentoml_home)


@dataclass
class SmokeResult:
    target: str
    model: dict
    seconds_to_ready: float
    latency_ms: float
    response: dict = field(repr=False)

    @property
    def top(self) -> list[dict]:
        return self.response["items"][:5]


def smoke_check(
    target: str = SERVICE,
    *,
    version: str | None = None,
    model_dir: Path | None = None,
    table_dir: Path | None = None,
    state: State | None = None,
    bentoml_home: Path | None = None,
    working_dir: Path | None = None,
    n_candidates: int = 5,
    timeout: float = 120.0,
) -> SmokeResult:
    """Serve `target` (a bento tag, or `service:RankingService` with `working_dir` = bento/) with registry
    version `version`, or with the local folders `model_dir` + `table_dir`; check that it answers; stop it.

    Raises `PackagingError` naming what failed, with the tail of the server's log.
    """
    if (version is None) == (model_dir is None):
        raise PackagingError("smoke_check needs either a registry `version` or a local `model_dir` + `table_dir`")
    state = state or State.from_env()
    if version is not None:
        from cscnn.tools import model_registry

        ref = model_registry.get_version(version, state)
        expected = {"version": ref.version, "fingerprint": ref.fingerprint}
        table_dir = model_registry.fetch(ref, state)[1]
        extra = {"CSCNN_STATE": str(state.root), "CSCNN_MODEL_VERSION": ref.version, "CSCNN_MODEL_DIR": ""}
    else:
        if table_dir is None:
            raise PackagingError("smoke_check with `model_dir` needs `table_dir` (the model's embedding table)")
        fingerprint = json.loads((Path(model_dir) / "model.json").read_text())["fingerprint"]
        expected = {"fingerprint": fingerprint}
        extra = {"CSCNN_MODEL_DIR": str(Path(model_dir).resolve()), "CSCNN_TABLE_DIR": str(Path(table_dir).resolve())}
    catalog = pd.read_parquet(Path(table_dir) / CATALOG_FILE, columns=["item_id"])
    request = {
        "user": {"id": SMOKE_USER},
        "context": {"device": "mobile", "hour": 12},
        "candidates": [*catalog["item_id"].head(n_candidates).tolist(), SMOKE_NEW_ITEM],
    }
    stop_stale_servers(state)
    server = BentoServer(target, bentoml_env(bentoml_home, extra), working_dir, timeout, state.servers)
    with server as (url, ready_seconds, log):
        with httpx.Client(base_url=url, timeout=30) as client:
            started = time.perf_counter()
            answer = client.post("/rank", json=request)
            latency_ms = (time.perf_counter() - started) * 1e3
            bad = client.post("/rank", json={**request, "candidates": []})
            metrics = client.get("/metrics").text
        problems = _check_answer(answer, request, expected) + _check_bad(bad) + _check_metrics(metrics, expected)
        if problems:
            raise PackagingError(f"smoke check of {target} failed: {'; '.join(problems)}\n{_tail(log.read_text())}")
    response = answer.json()
    return SmokeResult(target, response["model"], ready_seconds, latency_ms, response)


def _check_answer(answer: httpx.Response, request: dict, expected: dict) -> list[str]:
    if answer.status_code != 200:
        return [f"/rank answered {answer.status_code}: {answer.text[:300]}"]
    body = answer.json()
    problems = [
        f"served model {key} {body['model'].get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if body["model"].get(key) != value
    ]
    items = body["items"]
    scores = [item["score"] for item in items]
    if sorted(item["item_id"] for item in items) != sorted(request["candidates"]):
        problems.append("the ranked items are not the candidates")
    if not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores) or scores != sorted(scores, reverse=True):
        problems.append(f"scores are not probabilities in descending order: {scores}")
    flags = {item["item_id"]: item["flags"] for item in items}
    if "not_in_catalogue" not in flags.get(SMOKE_NEW_ITEM, []):
        problems.append(f"the unknown item {SMOKE_NEW_ITEM!r} is not flagged not_in_catalogue")
    if body.get("user_known") is not False:
        problems.append("the unknown user is not flagged")
    return problems


def _check_bad(bad: httpx.Response) -> list[str]:
    if bad.status_code != 400 or "candidates" not in bad.text:
        return [f"an empty candidate list answered {bad.status_code} {bad.text[:200]}, expected 400 naming it"]
    return []


def _check_metrics(metrics: str, expected: dict) -> list[str]:
    wanted = f'fingerprint="{expected["fingerprint"]}"'
    served = [line for line in metrics.splitlines() if line.startswith("cscnn_served_model{") and wanted in line]
    if not any(line.rstrip().endswith(" 1.0") for line in served):
        return [f"/metrics has no cscnn_served_model{{...{wanted}...}} 1.0"]
    return []


class BentoServer:
    """`bentoml serve TARGET` in its own process group on a free local port, as a context manager that
    yields (url, seconds until ready, log file) and stops the server on exit.

    The server never outlives its owner: it is stopped on any exit of the block (errors included), it gets
    SIGTERM when the process that started it dies (Linux: PR_SET_PDEATHSIG), and with `record_dir` it is
    recorded there while it runs, so that `stop_stale_servers` can stop it should its owner be killed anyway.
    """

    def __init__(
        self,
        target: str,
        env: dict[str, str],
        working_dir: Path | None,
        timeout: float,
        record_dir: Path | None = None,
    ) -> None:
        self.target, self.env, self.working_dir, self.timeout = target, env, working_dir, timeout
        self.record_dir = record_dir
        self.record: Path | None = None

    def __enter__(self) -> tuple[str, float, Path]:
        port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="cscnn-serve-", suffix=".log")[1])
        command = [sys.executable, "-m", "bentoml", "serve", self.target, "--host", "127.0.0.1", "--port", str(port)]
        if self.working_dir is not None:
            command += ["--working-dir", str(self.working_dir)]
        started = time.perf_counter()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
        url = f"http://127.0.0.1:{port}"
        try:
            self.record = _record_server(self.record_dir, self.proc.pid, self.target, url)
            wait_ready(url, self.timeout, self.proc)
        except PackagingError as exc:
            log_tail = _tail(self.log.read_text(errors="replace"))  # before __exit__ deletes the log
            self.__exit__(None, None, None)
            raise PackagingError(f"{exc}\n{log_tail}") from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return url, time.perf_counter() - started, self.log

    def __exit__(self, *_exc) -> None:
        try:
            stop_process_group(self.proc)
        finally:
            if self.record is not None:
                self.record.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)


def die_with_parent(parent: int):
    """A `preexec_fn` that asks Linux to SIGTERM the child when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone (or a
    zombie); with the pid it names one process, even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def _record_server(record_dir: Path | None, pid: int, target: str, url: str) -> Path | None:
    if record_dir is None:
        return None
    record = Path(record_dir) / f"{pid}.json"
    me = os.getpid()
    info = {"pid": pid, "start": _start_time(pid), "owner": me, "owner_start": _start_time(me), "target": target}
    write_json(record, {**info, "url": url})
    return record


def stop_stale_servers(state: State) -> list[int]:
    """Stop the servers a smoke check recorded in `state.servers` whose owner is gone (it was killed);
    forget records of servers that ended. Returns the pids of the servers stopped."""
    stopped = []
    for record in sorted(state.servers.glob("*.json")):
        try:
            info = json.loads(record.read_text())
            pid, owner = int(info["pid"]), int(info["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            record.unlink(missing_ok=True)
            continue
        alive = info.get("start") is not None and _start_time(pid) == info["start"]
        if alive and info.get("owner_start") is not None and _start_time(owner) == info["owner_start"]:
            continue  # its owner still runs: not stale
        if alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                _stop_group(pid, info["start"])
            stopped.append(pid)
        record.unlink(missing_ok=True)
    return stopped


def _stop_group(pgid: int, start: str, grace: float = 15.0) -> None:
    """SIGTERM a process group that is not our child (led by the process that started at `start`), SIGKILL it
    after `grace` seconds."""
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _start_time(pgid) != start:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)


def wait_ready(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll `url`/readyz until it answers 200; fail early when the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PackagingError(f"the server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise PackagingError(f"the server at {url} was not ready within {timeout:.0f}s")


def stop_process_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the server's process group (BentoML runs workers as children), SIGKILL after `grace`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
