"""The status of one day of the daily loop: the one record every orchestrator reads.

The pipeline's steps write it (`mark`), the Airflow report task, `cscnn daily status` and the demo read it
(`read`). Standard library only, so that the DAG files can import it at parse time for free. It is a JSON
file per day in the state folder (`State.day_status_file`), replaced atomically on every change; on a
cluster (`CSCNN_STATUS_STORE=mlflow`) a run per day in the MLflow tracking server (`cscnn.tools.record_store`),
so that every pod and Airflow worker reads the same record.

    started -> validated -> versioned -> trained -> evaluated -> promoted | not_promoted
                   \\-> rejected        \\-> waiting_for_history
    any step that raises -> failed (rejected for a data error), with the step's name and the error

Every pipeline step runs inside `cscnn.daily.faults.failing_step`, which records the step while it runs
(`running`: which process) and, when it raises, the outcome; `faults.as_reported` reads a record whose running
process is gone as interrupted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from dataclasses import dataclass
from typing import Any, TypedDict

from cscnn.files import write_json
from cscnn.state import State


class DayStatus(enum.StrEnum):
    STARTED = "started"
    VALIDATED = "validated"
    REJECTED = "rejected"  # the day's data was refused (validation, or a data contract error in a later step)
    FAILED = "failed"  # a step raised or its process died: `step` and `error` say which and why
    VERSIONED = "versioned"
    WAITING_FOR_HISTORY = "waiting_for_history"  # versioned, but too few days to train on yet
    TRAINED = "trained"
    EVALUATED = "evaluated"
    PROMOTED = "promoted"
    NOT_PROMOTED = "not_promoted"


IN_PROGRESS = frozenset(
    {
        DayStatus.STARTED,
        DayStatus.VALIDATED,
        DayStatus.VERSIONED,
        DayStatus.WAITING_FOR_HISTORY,
        DayStatus.TRAINED,
        DayStatus.EVALUATED,
    }
)
DECIDED = frozenset({DayStatus.PROMOTED, DayStatus.NOT_PROMOTED})  # the gate decided; rerun only when forced


class Running(TypedDict):
    """The process running a step of the day now (`cscnn.daily.faults.failing_step`); cleared when it ends."""

    step: str
    pid: int
    host: str
    since: str  # UTC, ISO seconds
    process_start: str | None  # its start time (Linux /proc), so that a reused pid is not taken for it


class Failure(TypedDict, total=False):
    """One failed expectation (`cscnn.tools.validation`)."""

    table: str
    expectation: str
    column: str | None
    details: str


class Validation(TypedDict):
    success: bool
    failures: list[Failure]
    docs: str  # the data docs page


class Refresh(TypedDict, total=False):
    refreshed: int  # new items embedded by the champion's CNN
    n_items: int
    version: str  # the champion version that embedded them
    embeddings: str
    skipped: str  # why nothing was refreshed


class Candidate(TypedDict):
    fingerprint: str
    days: dict[str, list[str]]
    val_auc: float
    best_epoch: int
    train_seconds: float


class Evaluation(TypedDict):
    candidate_auc: float
    champion: str  # "0.7412 (v3)" or "none"


class Gate(TypedDict, total=False):
    """`cscnn.tools.gate.GateDecision.to_dict()`."""

    passed: bool
    checks: list[dict[str, Any]]
    candidate_auc: float | None
    champion_auc: float | None
    champion_version: str | None
    reasons: list[str]


class Package(TypedDict):
    tag: str
    build_seconds: float
    ready_seconds: float
    latency_ms: float
    top_items: list[str]


@dataclass(frozen=True)
class DayRecord:
    """What the loop recorded for a day. Fields stay None until the step that sets them has run."""

    day: str
    status: DayStatus | None = None
    updated: str | None = None  # UTC, ISO seconds
    validation: Validation | None = None
    data_version: str | None = None  # the DVC data registry's tag of the day
    history_days: int | None = None
    refresh: Refresh | None = None
    candidate: Candidate | None = None
    evaluation: Evaluation | None = None
    gate: Gate | None = None
    candidate_version: str | None = None  # MLflow model version (alias `challenger`)
    mlflow_run: str | None = None
    package: Package | None = None
    champion: str | None = None  # the champion version once the day is decided
    step: str | None = None  # the pipeline step running, or the last one entered (the failed one when `error`)
    running: Running | None = None  # who runs `step` now; left behind by a process that died in it
    error: str | None = None  # one line: why the last run failed (`ExceptionType: message`)
    retryable: bool | None = None  # False: a data or configuration error, which a retry cannot fix

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DayRecord:
        """Known fields only: a file written by a newer version of the project still reads."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("status") is not None:
            values["status"] = DayStatus(values["status"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, DayStatus) else v) for k, v in dataclasses.asdict(self).items()}

    @property
    def decided(self) -> bool:
        return self.status in DECIDED

    @property
    def failures(self) -> list[Failure]:
        return list((self.validation or {}).get("failures") or [])

    @property
    def gate_passed(self) -> bool | None:
        return None if self.gate is None else bool(self.gate.get("passed"))

    @property
    def failed(self) -> bool:
        """The last run of the day ended in an error (a decided day keeps its decision; `error` says why)."""
        return self.error is not None


def read(state: State, day: str) -> DayRecord:
    if state.status_store == "mlflow":
        from cscnn.tools import record_store  # not the standard library: only when a cluster asks for it

        data = record_store.load(state, day)
        return DayRecord.from_dict(data) if data else DayRecord(day=day)
    path = state.day_status_file(day)
    return DayRecord.from_dict(json.loads(path.read_text())) if path.is_file() else DayRecord(day=day)


def _write(state: State, record: DayRecord) -> None:
    if state.status_store == "mlflow":
        from cscnn.tools import record_store

        record_store.save(state, record.day, record.to_dict())
    else:
        write_json(state.day_status_file(record.day), record.to_dict())


def mark(state: State, day: str, **fields: Any) -> DayRecord:
    """Merge `fields` (names of `DayRecord` fields; a typo is a TypeError) into the day's record.

    A day the gate already decided keeps that decision while a later run (a forced rerun, the embedding
    refresh) is in progress, and when that run fails (its `error` is recorded); the rerun's own decision, or a
    rejection, replaces it.
    """
    record = read(state, day)
    new_status = fields.get("status")
    if new_status is not None:
        fields["status"] = DayStatus(new_status)
        if fields["status"] in IN_PROGRESS | {DayStatus.FAILED} and record.decided:
            del fields["status"]
    record = dataclasses.replace(record, **fields, updated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    _write(state, record)
    return record


def skip_reason(record: DayRecord, force: bool) -> str | None:
    """A day that already ended in a gate decision is not run again unless forced."""
    if force or not record.decided:
        return None
    return f"day {record.day} was already decided ({record.status} at {record.updated or '?'})"


def rejected_by_this_run(before: DayRecord, after: DayRecord) -> bool:
    """This run rejected the day's data (not a stale mark from an earlier run): never transient."""
    return after.status == DayStatus.REJECTED and after != before


def format_failures(record: DayRecord) -> list[str]:
    return [
        f"  {f.get('table')}: {f.get('expectation')}"
        + (f" [{f['column']}]" if f.get("column") else "")
        + (f": {f['details']}" if f.get("details") else "")
        for f in record.failures
    ]


def format_record(record: DayRecord) -> str:
    """What operators read in the report task's log: decision, AUCs, model and data versions, data docs."""
    lines = [f"day {record.day}: {record.status or 'no status recorded'}"]
    if record.validation:
        verdict = "passed" if record.validation.get("success") else "FAILED"
        lines.append(f"validation: {verdict}; data docs: {record.validation.get('docs')}")
        lines += format_failures(record)
    lines.append(f"data version: {record.data_version or '-'}")
    if record.status == DayStatus.WAITING_FOR_HISTORY:
        lines.append(f"history: {record.history_days} day(s) versioned, not enough to train a candidate yet")
    if record.refresh:
        refresh = record.refresh
        lines.append(
            f"embedding refresh: {refresh.get('refreshed', 0)} new item(s)"
            + (f" by champion v{refresh['version']}" if refresh.get("version") else f" ({refresh.get('skipped')})")
        )
    if record.gate:
        gate = record.gate
        lines.append(
            f"gate: {'PASSED' if gate.get('passed') else 'FAILED'}; candidate AUC {_auc(gate.get('candidate_auc'))}, "
            f"champion AUC {_auc(gate.get('champion_auc'))}"
            + (f" (v{gate['champion_version']})" if gate.get("champion_version") else "")
        )
        lines += [f"  reason: {reason}" for reason in gate.get("reasons") or []]
    if record.candidate_version:
        lines.append(f"candidate: model version {record.candidate_version} (MLflow run {record.mlflow_run})")
    if record.decided:
        lines.append(f"champion: {'v' + str(record.champion) if record.champion else 'none yet'}")
    if record.running:
        run = record.running
        lines.append(f"running: step {run['step']} (pid {run['pid']} on {run['host']} since {run['since']})")
    if record.error:
        retry = {False: " (not retried: fix the data or the configuration)", True: ""}.get(record.retryable, "")
        lines.append(f"failed step: {record.step or '-'}{retry}")
        lines.append(f"error: {record.error}")
    return "\n".join(lines)


def summary(record: DayRecord) -> dict[str, Any]:
    """The few fields a dashboard or a downstream DAG wants (the report task's XCom)."""
    gate = record.gate or {}
    return {
        "day": record.day,
        "status": str(record.status) if record.status else None,
        "gate_passed": record.gate_passed,
        "candidate_auc": gate.get("candidate_auc"),
        "champion_auc": gate.get("champion_auc"),
        "candidate_version": record.candidate_version,
        "champion": record.champion,
        "data_version": record.data_version,
        "data_docs": (record.validation or {}).get("docs"),
        "failed_step": record.step if record.error else None,
        "error": record.error,
    }


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
