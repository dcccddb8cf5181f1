"""Helper process for tests/system/test_faults.py: one run of `orchestration.run_day` whose pipeline is a stub.

    python faults.py STATE LANDING DAY SECONDS OUT.json

Takes the state's lock and recovers exactly as a real run does (`run_day` is not patched), then, in place of the
Kubeflow pipeline, sleeps SECONDS and writes OUT.json: when the stub pipeline started and ended, this pid, and
what the first step would see of the data registry (its days, whether git calls it dirty). A run that could
not take the lock writes {"error": "..."} instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import kfp_pipelines.runner
from cscnn.data.io import list_days
from cscnn.entrypoints import orchestration
from cscnn.errors import CSCNNError
from cscnn.state import State


def main(state_dir: str, landing: str, day: str, seconds: str, out: str) -> int:
    state = State(Path(state_dir).resolve())

    def stub_pipeline(name: str, arguments: dict) -> dict:
        started = time.time()
        world = state.registry_world
        dirty = None
        if (state.data_registry / ".git").exists():
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=all"],
                cwd=state.data_registry,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        days = list_days(world) if (world / "impressions").is_dir() else []
        time.sleep(float(seconds))
        return {"started": started, "ended": time.time(), "registry_days": days, "registry_dirty": dirty}

    kfp_pipelines.runner.run_pipeline = stub_pipeline
    landing = str(Path(landing).resolve())
    arguments = {"day": day, "landing": landing, "state_dir": str(state.root), "profile": "tiny", "overrides": []}
    try:
        result = orchestration.run_day("daily", arguments, force=True)
    except CSCNNError as exc:
        Path(out).write_text(json.dumps({"error": str(exc), "at": time.time()}))
        return 1
    Path(out).write_text(json.dumps({**result["run"], "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
