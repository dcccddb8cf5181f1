"""Clean up after a run of the loop that did not end (killed, or its machine lost), before the next one starts.

`cscnn.entrypoints.orchestration.run_day` calls `recover` while it holds the state's lock (`cscnn.locks`), so
nothing else is working on the state: whatever is half-made now was left by a dead run.

- servers: a smoke check's `bentoml serve` whose owner is gone is stopped (`packaging.stop_stale_servers`);
- data registry: a versioning killed half-way is undone, back to the last commit (`versioning.recover`), before
  validation reads the registry for its baseline, so a half-versioned day is never seen as versioned;
- model registry: versions whose registration did not complete are deleted, RUNNING runs end FAILED
  (`model_registry.clean_incomplete`).

Each part is skipped when its store does not exist yet, so a fresh state stays untouched.
"""

from __future__ import annotations

from pathlib import Path

from cscnn.state import State, cluster_mode


def _log(message: str) -> None:
    print(message, flush=True)


def recover(state: State, model_name: str | None = None) -> dict:
    """Undo what dead runs left on `state`; returns what was done (empty when there was nothing)."""
    done: dict = {}
    if any(state.servers.glob("*.json")):
        from cscnn.tools import packaging

        stopped = packaging.stop_stale_servers(state)
        if stopped:
            done["servers_stopped"] = stopped
            _log(f"recovery: stopped {len(stopped)} server(s) left by a killed package check: pids {stopped}")
    if (state.data_registry / ".git").exists():
        from cscnn.tools import versioning

        if versioning.recover(state.data_registry):
            done["data_registry_restored"] = True
            _log(f"recovery: {state.data_registry} restored to its last commit (an unfinished versioning)")
    uri = state.tracking_uri
    if cluster_mode():  # no lock spans machines: what looks half-made may be another run's work in progress
        _log("recovery: model registry clean-up skipped in cluster mode (no cross-machine lock)")
    elif not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists():
        from cscnn.tools import model_registry

        cleaned = model_registry.clean_incomplete(state, model_name)
        if cleaned["deleted_versions"] or cleaned["failed_runs"]:
            done.update(cleaned)
            _log(
                f"recovery: deleted half-registered model version(s) {cleaned['deleted_versions']}, "
                f"marked {len(cleaned['failed_runs'])} interrupted MLflow run(s) FAILED"
            )
    return done
