"""Days in order: a day runs only after the landed days before it have gone through the loop.

Runs of one state are serialised by its lock, but in whichever order they take it. Started together, day 5
could train before day 4 was versioned (its training window silently without day 4) and promote; day 4 would
then train and move the champion back to a model gated on older data. Two rules stop that:

- here, before anything of the day is recorded: every landed day from the data registry's first day up to the
  day before this one is versioned or was rejected, else the run fails naming the first that is not (a
  `RunFailure`, so the pipeline task's retry waits for it); `validation.require_previous_day=false` lets an
  operator backfill on purpose;
- in the gate (`cscnn.tools.gate`, check `day_order`): a day older than the champion's never replaces it.

Days before the registry's first day are history the loop never ran: they are not predecessors.
"""

from __future__ import annotations

from pathlib import Path

from cscnn.config import Config
from cscnn.daily.faults import reported
from cscnn.daily.status import DayStatus
from cscnn.data.io import list_days
from cscnn.errors import RunFailure
from cscnn.state import State


class OutOfOrder(RunFailure):
    """An earlier landed day has not been versioned (or rejected) yet."""


def versioned_days(state: State) -> list[str]:
    """The days the data registry holds (empty before the first day is versioned)."""
    if state.data_registry_remote is not None:  # a cluster: the day names from the git remote, no data pulled
        from cscnn.tools import versioning

        return sorted(versioning.versioned_days(state.data_registry, state.dvc_remote, state.data_registry_remote))
    world = state.registry_world
    return list_days(world) if (world / "impressions").is_dir() else []


def check_predecessors(landing: Path, day: str, cfg: Config, state: State) -> None:
    """Raise `OutOfOrder` naming the latest landed day before `day` that is neither versioned nor rejected."""
    if not cfg.validation.require_previous_day:
        return
    versioned = versioned_days(state)
    if not versioned:
        return  # the first day the loop runs
    for earlier in sorted((d for d in list_days(Path(landing)) if versioned[0] <= d < day), reverse=True):
        if earlier in versioned:
            return
        record = reported(state, earlier)
        if record.status == DayStatus.REJECTED:
            continue
        raise OutOfOrder(
            f"day {day} cannot run before day {earlier}, which has landed but is not versioned "
            f"({record.status or 'never run'}): run {earlier} first (a retry of this run waits for it), "
            "or set validation.require_previous_day=false to backfill on purpose"
        )
