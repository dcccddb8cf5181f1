"""Compile the pipelines, and run one: `kfp.local` by default, a KFP host when one is configured.

Airflow's trigger task and `cscnn daily run` both call `run_pipeline`; that is the only place that knows
whether the pipeline runs locally or on a cluster.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from cscnn.errors import ConfigError
from kfp_pipelines.daily import PIPELINES

COMPILED_DIR = Path(__file__).parent / "compiled"


def compiled_path(name: str) -> Path:
    return COMPILED_DIR / f"{name}.yaml"


def compile_all(out_dir: Path = COMPILED_DIR) -> list[Path]:
    """Write each pipeline's IR YAML (committed; a test fails when it is stale)."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pipeline in PIPELINES.items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        paths.append(path)
    return paths


def run_pipeline(name: str, arguments: dict, host: str | None = None, timeout_s: int = 6 * 3600) -> dict:
    """Run pipeline `name` with `arguments` and wait. Raises RuntimeError when the run fails."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; known: {sorted(PIPELINES)}")
    host = host or os.environ.get("KFP_HOST") or None
    if host:
        return submit(name, arguments, host, timeout_s)
    return run_local(name, arguments)


# What kfp.local warns about on every task, though it is the design here: the components run in this venv, not
# in their image, and the cluster settings (GPU, CPU, memory) are for a cluster. One line per run says so instead.
LOCAL_RUNNER_WARNINGS = (
    (RuntimeWarning, r"You may be attemping to run a task that uses custom or non-Python base image"),
    (UserWarning, r"Task '[^']*': settings \[.*\] have no effect in the current local runner"),
)


def run_local(name: str, arguments: dict) -> dict:
    """`kfp.local` with the subprocess runner in this venv (no Docker, no cluster)."""
    from kfp import local

    from cscnn.cluster import IMAGE
    from cscnn.state import State

    state_dir = State.from_env(arguments["state_dir"] or None).root  # "": a cluster step's own scratch
    root = state_dir / "kfp-local" / arguments.get("day", "run")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    print(f"kfp.local: every task runs in this venv, not in {IMAGE}; GPU, CPU and memory settings apply on a cluster")
    started = time.perf_counter()
    with warnings.catch_warnings():
        for category, message in LOCAL_RUNNER_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        PIPELINES[name](**arguments)
    seconds = time.perf_counter() - started
    return {"mode": "kfp.local", "pipeline": name, "pipeline_root": str(root), "url": root.as_uri(), "seconds": seconds}


def submit(name: str, arguments: dict, host: str, timeout_s: int) -> dict:
    """Submit the compiled YAML to a Kubeflow Pipelines host and wait for the run to finish. Caching is off for
    the run as in the IR: `enable_caching=None` would let the backend's default decide."""
    import kfp

    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_package(  # no cache: every step writes (kfp_pipelines/README.md)
        str(compiled_path(name)),
        arguments=arguments,
        run_name=f"{name}-{arguments.get('day', '')}",
        enable_caching=False,
    )
    url = run_url(host, run.run_id)
    print(f"KFP run {run.run_id}: {url}", flush=True)  # in the Airflow task's log before the long wait
    detail = client.wait_for_run_completion(run.run_id, timeout=timeout_s)
    state = str(getattr(detail, "state", "") or "").upper()
    if state != "SUCCEEDED":
        raise RuntimeError(f"KFP run {run.run_id} on {host} ended in state {state or 'unknown'}: {url}")
    return {"mode": "kfp", "pipeline": name, "host": host, "run_id": run.run_id, "url": url, "state": state}


def run_url(host: str, run_id: str) -> str:
    """The run's page in the KFP UI (the address `kfp.Client` itself prints for a new run)."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"
