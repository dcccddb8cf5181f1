"""What failed in a day's run, recorded in its status (`cscnn.daily.status`) and read back for operators.

`failing_step` wraps every pipeline step (the KFP components enter it through `cscnn.daily.tasks.running`): it
records the step and the process running it, and when the step raises, `failed` (`rejected` for a data error)
with the step's name, the error in one line and whether a retry can help. `record_run_failure` fills in what a
killed step could not record; `as_reported` reads a step whose process is gone as interrupted.
Standard library only, like the status module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import socket
from collections.abc import Iterator

from cscnn.daily.status import DayRecord, DayStatus, Running, mark, read
from cscnn.errors import ConfigError, DataContractError
from cscnn.state import State

ERROR_CHARS = 400  # the recorded error is one line of at most this many characters


@contextlib.contextmanager
def failing_step(state: State, day: str, step: str) -> Iterator[None]:
    """Run one pipeline step of `day` in the block: record it as running (by this process), and when the block
    raises, record `failed` (`rejected` for a data error) with the step and the error in one line, then raise.

    Every KFP component runs its step in here (`cscnn.daily.tasks.running`), so no failure goes unrecorded;
    a process killed inside leaves `running` behind, which `as_reported` reads as interrupted."""
    mark(state, day, step=step, running=_this_process(step), error=None, retryable=None)
    try:
        yield
    except BaseException as exc:
        data_error = isinstance(exc, DataContractError)
        with contextlib.suppress(Exception):  # never hide the step's own error behind a failed write (a file, a server)
            mark(
                state,
                day,
                status=DayStatus.REJECTED if data_error else DayStatus.FAILED,
                step=step,
                running=None,
                error=one_line(exc),
                retryable=not isinstance(exc, DataContractError | ConfigError),
            )
        raise
    mark(state, day, running=None)


def one_line(exc: BaseException) -> str:
    """`ExceptionType: first line of the message`, at most `ERROR_CHARS` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def record_run_failure(state: State, day: str, before: DayRecord, exc: BaseException) -> DayRecord:
    """After a pipeline run of `day` failed: the record as the failing step left it, or, when no step recorded
    the failure (its process was killed, or the runner failed outside a step), `failed` with what is known."""
    after = read(state, day)
    if after != before and (after.failed or after.status == DayStatus.REJECTED):
        return after  # the step recorded it (a rejection needs no error line: its failures say why)
    if after.running:
        where = f"step {after.running['step']} ended without recording an outcome (its process died)"
    elif after != before:
        where = f"the run failed after step {after.step}"
    else:
        where = "the run failed before its first step"
    step = (after.running or {}).get("step") or (after.step if after != before else None)
    with contextlib.suppress(OSError):
        after = mark(
            state,
            day,
            status=DayStatus.FAILED,
            step=step,
            running=None,
            error=f"{where}: {one_line(exc)}"[:ERROR_CHARS],
            retryable=True,
        )
    return after


def interrupted(record: DayRecord) -> str | None:
    """Why the record's running step is known to be dead (its process is gone from this host), else None.
    A step running on another host (a pod) cannot be checked from here and counts as running."""
    run = record.running
    if not run or run.get("host") != socket.gethostname():
        return None
    pid, started = int(run["pid"]), run.get("process_start")
    now = _process_started(pid)
    if not _alive(pid) or (started is not None and now is not None and now != started):  # gone, or pid reused
        return (
            f"interrupted: step {run['step']} was running (pid {run['pid']} on {run['host']} since {run['since']}) "
            "and that process is gone without recording an outcome"
        )
    return None


def reported(state: State, day: str) -> DayRecord:
    """The day's record as every reader sees it (operators, the skip and order rules, reports): `read`, then
    `as_reported`. Only the writers (`status.mark`, `failing_step`) read the raw record."""
    return as_reported(read(state, day))


def as_reported(record: DayRecord) -> DayRecord:
    """The record as operators should read it: an interrupted step makes the day `failed` (a decided day keeps
    its decision) with the step and why; anything else as recorded."""
    why = interrupted(record)
    if why is None:
        return record
    return dataclasses.replace(
        record,
        status=record.status if record.decided else DayStatus.FAILED,
        step=record.running["step"],
        running=None,
        error=why,
    )


SHOWN_CHECKS = 3  # failed validation checks named in the one line (all of them are in the JSON)


def failure_line(record: DayRecord) -> str | None:
    """One line for a day whose last run failed: status, step, error, the failed checks with their columns (a
    rejected day: which data to fix), and whether a retry can help."""
    if not record.failed:
        return None
    retry = {False: " (not retryable: fix the data or the configuration)", True: " (a retry may help)"}
    checks = [
        f"{f.get('table')}.{f.get('expectation')}" + (f" [{f['column']}]" if f.get("column") else "")
        for f in record.failures
    ]
    named = ""
    if checks:
        more = f" and {len(checks) - SHOWN_CHECKS} more" if len(checks) > SHOWN_CHECKS else ""
        named = f"; failed checks: {', '.join(checks[:SHOWN_CHECKS])}{more}"
    return (
        f"day {record.day}: {record.status or 'no status'}; step {record.step or '-'} failed: {record.error}"
        + named
        + retry.get(record.retryable, "")
    )


def _this_process(step: str) -> Running:
    pid = os.getpid()
    return {
        "step": step,
        "pid": pid,
        "host": socket.gethostname(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "process_start": _process_started(pid),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None
