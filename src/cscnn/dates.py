"""Days as the project spells them (standard library only): YYYY-MM-DD, in file names and run dates."""

from __future__ import annotations

import datetime as dt


def is_day(value: object) -> bool:
    """Whether `value` names a day as the contract spells it: YYYY-MM-DD (a file name, a run date)."""
    try:
        return dt.date.fromisoformat(value).isoformat() == value  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def check_day(value: str | None, what: str = "run date") -> str:
    """`value` if it is a YYYY-MM-DD day; a ValueError naming the problem otherwise."""
    if not value:
        raise ValueError(f"no {what}: set the 'day' param or run with a logical date")
    if not is_day(value):
        raise ValueError(f"{what} {value!r} is not a YYYY-MM-DD date")
    return value
