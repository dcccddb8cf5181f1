"""The outcome of a validation: `ValidationReport`, and GX results turned into readable failures.

The helpers here (private to the package) read GX `ExpectationValidationResult`s: `_failures` lists the failed
expectations of one table as `{"table", "expectation", "column", "details", "description"}` dicts, `_details`
and `_passed_text` say in words what a result found, and `_json_safe` makes the GX results strict JSON for
`validation.json`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULT_FILE = "validation.json"
SHOW_UNEXPECTED = 5  # unexpected values the human-readable details show per failed expectation
FAILURE_KEYS = ("table", "expectation", "column", "details")  # of each failed expectation


@dataclass
class ValidationReport:
    """The outcome of `validate_day`: pass/fail, every failed expectation, and the day's statistics."""

    day: str
    success: bool
    failures: list[dict]  # {"table", "expectation", "column", "details"} per failed expectation
    statistics: dict
    result_path: Path
    docs_path: Path | None
    skipped: list[str] = field(default_factory=list)  # checks that were not run, and why

    def summary(self) -> str:
        stats = self.statistics
        head = (
            f"validation of {self.day}: {'PASSED' if self.success else 'FAILED'} "
            f"({stats.get('n_failed', 0)} of {stats.get('n_expectations', 0)} expectations failed; "
            f"rows={stats.get('rows')}, ctr={_fmt(stats.get('ctr'))}, "
            f"category KL={_fmt(stats.get('drift', {}).get('kl_divergence'))})"
        )
        lines = [head]
        for f in self.failures:
            column = f" column '{f['column']}'" if f.get("column") else ""
            lines.append(f"  FAIL {f['table']}: {f['expectation']}{column}: {f['details']}")
        lines += [f"  skipped: {reason}" for reason in self.skipped]
        lines.append(f"  results: {self.result_path}")
        if self.docs_path is not None:
            lines.append(f"  data docs: {self.docs_path}")
        return "\n".join(lines)

    def html(self) -> str:
        """The report as one self-contained page (the KFP UI shows it as the `validate` task's HTML output):
        the verdict, the day's statistics, every failed expectation and every skipped check."""
        from html import escape

        stats = self.statistics
        verdict = "PASSED" if self.success else "FAILED"
        facts = {
            "expectations failed": f"{stats.get('n_failed', 0)} of {stats.get('n_expectations', 0)}",
            "rows": stats.get("rows"),
            "CTR": _fmt(stats.get("ctr")),
            "category KL divergence": _fmt(stats.get("drift", {}).get("kl_divergence")),
        }
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts.items())
        failures = "".join(
            "<tr>" + "".join(f"<td>{escape(str(f.get(key) or ''))}</td>" for key in FAILURE_KEYS) + "</tr>"
            for f in self.failures
        )
        head = "".join(f"<th>{key}</th>" for key in FAILURE_KEYS)
        parts = [
            f"<!doctype html><meta charset='utf-8'><title>validation {escape(self.day)}</title>",
            f"<h2>Validation of {escape(self.day)}: {verdict}</h2><table>{rows}</table>",
            f"<h3>Failed expectations</h3><table><tr>{head}</tr>{failures}</table>" if failures else "",
            "".join(f"<p>skipped: {escape(reason)}</p>" for reason in self.skipped),
        ]
        return "\n".join(part for part in parts if part) + "\n"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["result_path"] = str(self.result_path)
        out["docs_path"] = str(self.docs_path) if self.docs_path is not None else None
        return out


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------------------------
# Turning GX results into our failures


def _exception_message(result: Any) -> str | None:
    """The message of the exception GX caught while evaluating `result`'s expectation, if any."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("_exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("_exception_message"))
    return None


def _expected_text(kwargs: dict) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in ("column", "column_list", "batch_id", "partition_object")}
    for key in ("min_value", "max_value"):
        if isinstance(shown.get(key), dt.datetime):
            shown[key] = shown[key].isoformat()
    return ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None)


def _plain(value: Any) -> Any:
    """A value from a GX result as a user would write it (`2`, not `np.int64(2)`)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _examples(res: dict) -> str:
    """A few unexpected rows as `key=value` lists (the checked boolean flag itself left out)."""
    rows = res.get("partial_unexpected_index_list") or []
    if rows:
        shown = [
            ", ".join(f"{k}={_plain(v)!r}" for k, v in row.items() if not isinstance(_plain(v), bool))
            for row in rows[:SHOW_UNEXPECTED]
        ]
        return "; ".join(f"({s})" for s in shown)
    return repr([_plain(v) for v in res.get("partial_unexpected_list", [])[:SHOW_UNEXPECTED]])


def _details(result: Any, present: list[str], columns: list[str]) -> str:
    """Human-readable details; `present`: the columns GX saw, `columns`: the file's own columns."""
    config = result.expectation_config
    column = config.kwargs.get("column")
    if config.type == "expect_column_to_exist" and column not in present:
        return f"column '{column}' is missing; the table has columns {columns}"
    if column is not None and column not in present:
        return f"not evaluated: column '{column}' is missing"
    message = _exception_message(result)
    if message is not None:
        return f"could not be evaluated: {message}"
    res = result.result or {}
    expected = _expected_text(dict(config.kwargs))
    expected = f" [{expected}]" if expected else ""
    if "unexpected_count" in res:
        return (
            f"{res['unexpected_count']} of {res.get('element_count')} rows unexpected "
            f"({res.get('unexpected_percent', 0.0):.2f}%){expected}; e.g. {_examples(res)}"
        )
    if "observed_value" in res:
        observed = _plain(res["observed_value"])
        if observed is None and config.type == "expect_column_kl_divergence_to_be_less_than":
            observed = "inf"
        return f"observed {observed}{expected}"
    return f"not met{expected}"


def _passed_text(result: Any) -> str:
    """What a passed expectation observed, for the data docs."""
    res = result.result or {}
    expected = _expected_text(dict(result.expectation_config.kwargs))
    if "observed_value" in res:
        return f"observed {res['observed_value']} [{expected}]"
    if "element_count" in res:
        return f"{res['element_count']} rows checked [{expected}]"
    return f"passed [{expected}]" if expected else "passed"


def _failures(table: str, validation: Any, present: list[str], columns: list[str]) -> list[dict]:
    """One failure dict per failed expectation of `table`'s GX validation result."""
    out = []
    for result in validation.results:
        if result.success:
            continue
        config = result.expectation_config
        kwargs = config.kwargs
        out.append(
            {
                "table": table,
                "expectation": config.type,
                "column": kwargs.get("column") or kwargs.get("column_list"),
                "details": _details(result, present, columns),
                "description": config.description,
            }
        )
    return out


def _json_safe(value: Any) -> Any:
    """GX results hold numpy scalars, timestamps and inf/NaN: make them strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        return value.isoformat()
    return str(value)
