"""Days in order (cscnn.daily.order): a day does not run before the landed days between the data registry's
first day and itself are versioned or rejected, unless a backfill is asked for. File names only: the check
reads which days exist, never their rows."""

from __future__ import annotations

import pytest

from cscnn.daily import status
from cscnn.daily.order import OutOfOrder, check_predecessors
from cscnn.daily.status import DayStatus
from cscnn.state import State


def days_in(folder, days):
    (folder / "impressions").mkdir(parents=True, exist_ok=True)
    for day in days:
        (folder / "impressions" / f"{day}.parquet").write_bytes(b"")
    return folder


@pytest.fixture
def setup(tiny_with, tmp_path):
    landing = days_in(tmp_path / "landing", ["2026-01-0" + str(i) for i in range(1, 7)])
    return landing, State(tmp_path / "state"), tiny_with()


def test_the_first_day_and_days_in_order_run(setup):
    landing, state, cfg = setup
    check_predecessors(landing, "2026-01-03", cfg, state)  # nothing versioned yet: the loop's first day
    days_in(state.registry_world, ["2026-01-02", "2026-01-03"])
    check_predecessors(landing, "2026-01-04", cfg, state)
    check_predecessors(landing, "2026-01-03", cfg, state)  # a rerun of a versioned day
    check_predecessors(landing, "2026-01-02", cfg, state)  # the registry's first day: 01 is history, not a step


def test_a_day_whose_predecessor_has_not_been_versioned_fails_naming_it(tiny_with, setup):
    landing, state, cfg = setup
    days_in(state.registry_world, ["2026-01-01", "2026-01-02", "2026-01-03"])
    with pytest.raises(OutOfOrder, match=r"day 2026-01-05 cannot run before day 2026-01-04.*\(never run\)"):
        check_predecessors(landing, "2026-01-05", cfg, state)
    status.mark(state, "2026-01-04", status=DayStatus.FAILED, step="validate", error="OSError: disk full")
    with pytest.raises(OutOfOrder, match=r"before day 2026-01-04, which has landed but is not versioned \(failed\)"):
        check_predecessors(landing, "2026-01-05", cfg, state)
    backfill = tiny_with("validation.require_previous_day=false")
    check_predecessors(landing, "2026-01-05", backfill, state)


def test_a_rejected_day_is_passed_over_but_not_the_days_before_it(setup):
    landing, state, cfg = setup
    days_in(state.registry_world, ["2026-01-01", "2026-01-02"])
    status.mark(state, "2026-01-04", status=DayStatus.REJECTED)
    with pytest.raises(OutOfOrder, match="before day 2026-01-03"):
        check_predecessors(landing, "2026-01-05", cfg, state)
    days_in(state.registry_world, ["2026-01-03"])
    check_predecessors(landing, "2026-01-05", cfg, state)
