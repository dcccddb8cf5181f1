"""The data-docs index page.

GX renders one static page per suite and per validation result, but its index lists them only through
JavaScript loaded from CDNs (blank offline). Our index.html is plain HTML: every expectation with its result,
linking to GX's pages; GX's own index stays next to it as gx_index.html.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from cscnn.tools.validation.report import RESULT_FILE, ValidationReport, _details, _fmt, _passed_text


def _write_docs_index(
    docs_root: Path, report: ValidationReport, results: dict, frame_columns: dict, raw_columns: dict
) -> None:
    """Write `docs_root/index.html` (moving GX's own index to gx_index.html): the report, then each table."""
    gx_index = docs_root / "index.html"
    if gx_index.is_file():
        gx_index.replace(docs_root / "gx_index.html")
    parts = _head(report)
    other = [f for f in report.failures if f["table"] not in results]
    if other:
        parts.append("<h2>Not validated</h2><ul>")
        parts += [f"<li>{html.escape(f['table'])}: {html.escape(str(f['details']))}</li>" for f in other]
        parts.append("</ul>")
    for table, validation in results.items():
        parts += _table_section(docs_root, table, validation, frame_columns[table], raw_columns[table])
    parts.append("</body></html>")
    (docs_root / "index.html").write_text("\n".join(parts) + "\n")


def _head(report: ValidationReport) -> list[str]:
    """The page head and the summary paragraph (plus the skipped checks)."""
    status = "PASSED" if report.success else "FAILED"
    stats = report.statistics
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>Validation {html.escape(report.day)}: {status}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        ".fail{background:#fdd}.ok{background:#dfd}</style>",
        "</head><body>",
        f"<h1>Validation of {html.escape(report.day)}: {status}</h1>",
        f"<p>{stats.get('n_failed', 0)} of {stats.get('n_expectations', 0)} expectations failed; "
        f"rows {stats.get('rows')}, CTR {_fmt(stats.get('ctr'))}, "
        f"category KL {_fmt(stats.get('drift', {}).get('kl_divergence'))}. "
        f'Machine-readable results: <a href="../{RESULT_FILE}">{RESULT_FILE}</a>. '
        '<a href="gx_index.html">Great Expectations index</a> (needs network for its scripts).</p>',
    ]
    if report.skipped:
        parts.append("<ul>" + "".join(f"<li>skipped: {html.escape(s)}</li>" for s in report.skipped) + "</ul>")
    return parts


def _table_section(docs_root: Path, table: str, validation: Any, present: list[str], columns: list[str]) -> list[str]:
    """One table's heading (links to GX's pages) and its expectations, failed first."""
    pages = sorted((docs_root / "validations" / table).rglob("*.html"))
    links = [f'<a href="expectations/{html.escape(table)}.html">suite</a>']
    links += [f'<a href="{html.escape(p.relative_to(docs_root).as_posix())}">GX result page</a>' for p in pages]
    verdict = "passed" if validation.success else "FAILED"
    parts = [f"<h2>{html.escape(table)}: {verdict} ({' | '.join(links)})</h2>"]
    parts.append("<table><tr><th>status</th><th>expectation</th><th>column</th><th>result</th></tr>")
    for result in sorted(validation.results, key=lambda r: r.success):
        config = result.expectation_config
        column = config.kwargs.get("column") or config.kwargs.get("column_list") or ""
        detail = _passed_text(result) if result.success else _details(result, present, columns)
        name = config.type + (f" &mdash; {html.escape(config.description)}" if config.description else "")
        parts.append(
            f'<tr class="{"ok" if result.success else "fail"}"><td>{"ok" if result.success else "FAIL"}</td>'
            f"<td>{name}</td><td>{html.escape(str(column))}</td><td>{html.escape(detail)}</td></tr>"
        )
    parts.append("</table>")
    return parts
