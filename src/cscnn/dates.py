"""Days as the project spells them (standard library only): YYYY-MM-DD, in file names and run dates."""

from __future__ import annotations

import datetime as dt

from cscnn.errors import ConfigError


def is_day(value: object) -> bool:
    """Whether `value` names a day as the contract spells it: YYYY-MM-DD (a file name, a run date)."""
    try:
        return dt.date.fromisoformat(value).isoformat() == value  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def check_day(value: str | None, what: str = "run date") -> str:
    """`value` if it is a YYYY-MM-DD day; a ConfigError naming the problem otherwise."""
    if not value:
        raise ConfigError(f"no {what}: set the 'day' param or run with a logical date")
    if not is_day(value):
        raise ConfigError(f"{what} {value!r} is not a YYYY-MM-DD date")
    return value
