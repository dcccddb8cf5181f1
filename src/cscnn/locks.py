"""One run of the loop at a time per state folder: an exclusive `flock` on `<state>/cscnn.lock`.

Every run of a pipeline on a state folder (`cscnn daily run`, the Airflow task bodies, either pipeline, with or
without an Airflow pool) holds the lock from before it reads the day's record until the pipeline has ended. A
second run on the same state waits up to `CSCNN_LOCK_WAIT` seconds (default 3600; 0: fail at once), then fails
with one line naming the holder (pid, host, what it runs, since when).

The kernel releases a `flock` when its holder dies, `kill -9` included, so a crashed run never leaves the state
locked. The holder's description is written into the lock file while it is held and cleared on a clean release:
a description left behind names a run that did not end cleanly (`LockHolder.stale_previous`), which the next run
reports before it cleans up after it. Standard library only: the DAG files import this at parse time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cscnn import settings
from cscnn.errors import RunFailure

LOCK_FILE = "cscnn.lock"
WAIT_ENV = "CSCNN_LOCK_WAIT"
POLL_S = 0.25

_held: dict[Path, int] = {}  # lock file -> nesting depth, for runs of this process (flock is not re-entrant per fd)


class StateLocked(RunFailure):
    """Another run holds the state folder's lock (and did not release it within the wait)."""


@dataclass(frozen=True)
class LockHolder:
    """What this run recorded in the lock file, and what an earlier run that did not end cleanly had left there."""

    path: Path
    info: dict
    stale_previous: dict | None = None


def lock_path(state_root: Path) -> Path:
    return Path(state_root) / LOCK_FILE


def wait_seconds(env: dict[str, str] | None = None) -> float:
    return float(settings.read(WAIT_ENV, env))


def describe(info: dict | None) -> str:
    """One line about a holder: `pid 123 on host h (daily 2026-01-03), since 2026-01-03T10:00:00Z (42 s ago)`."""
    if not info:
        return "an unknown process (no holder recorded yet)"
    since = info.get("since", "?")
    ago = ""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        ago = f" ({time.time() - float(info['since_epoch']):.0f} s ago)"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} ({info.get('what', '?')}), since {since}{ago}"


def read_holder(state_root: Path) -> dict | None:
    """The holder recorded in the lock file (None when free and cleanly released, or unreadable)."""
    try:
        text = lock_path(state_root).read_text()
    except OSError:
        return None
    with contextlib.suppress(ValueError):
        info = json.loads(text)
        return info if isinstance(info, dict) else None
    return None


@contextlib.contextmanager
def state_lock(state_root: Path, what: str, wait: float | None = None) -> Iterator[LockHolder]:
    """Hold the state folder's lock for the duration of the block. `what`: the run, for the holder's line
    (e.g. `daily 2026-01-03`). `wait`: seconds to wait for another holder (default: `CSCNN_LOCK_WAIT`).

    Raises `StateLocked` naming the holder when the wait runs out. Re-entrant within one process."""
    path = lock_path(state_root).resolve()
    if path in _held:  # this process holds it already (a run inside a run): flock on a new fd would deadlock
        _held[path] += 1
        try:
            yield LockHolder(path, read_holder(path.parent) or {})
        finally:
            _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, what, wait_seconds() if wait is None else wait)
        previous = _read_fd(fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "since_epoch": time.time(),
        }
        _write_fd(fd, json.dumps(info))
        _held[path] = 1
        try:
            yield LockHolder(path, info, stale_previous=previous)
        finally:
            del _held[path]
            _write_fd(fd, "")  # a clean release leaves no holder behind
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, what: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = describe(_read_fd(fd))
        if time.monotonic() >= deadline:
            hint = f"waited {wait:.0f} s; set {WAIT_ENV} to wait longer" if wait else f"set {WAIT_ENV} to wait for it"
            raise StateLocked(f"state {path.parent} is locked by {holder}: not running {what} ({hint})")
        if not announced:
            print(f"waiting up to {wait:.0f} s for the state lock {path}, held by {holder}", flush=True)
            announced = True
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def _read_fd(fd: int) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 1 << 16, 0).decode()
        info = json.loads(text) if text.strip() else None
        return info if isinstance(info, dict) else None
    return None


def _write_fd(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    os.fsync(fd)
