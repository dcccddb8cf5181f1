"""Great Expectations validation of one day of data (the first step of the daily loop).

The expectation suites are generated from the data contract in `cscnn.data.schema` (one loop over each
TableSpec's columns), plus the day-level checks that the contract cannot express column by column: row
count, mean CTR, every `ts` on the file's day, item and user ids that exist, the category mix against the
previous day (KL divergence) and catalogue images that decode. Thresholds come from `ValidationConfig`.

Validation reads the raw Parquet files with pandas (not `World`, which stops at the first problem), runs
every expectation and reports *all* failures; it never raises on bad data. It raises `DataContractError`
only when the day's impression file is missing or is not Parquet at all. Nothing under the world folder is
written; every output lands under `out_dir`:

    out_dir/validation.json       our summary + the full GX validation results (machine-readable)
    out_dir/data_docs/index.html  GX data docs: the suites and their validation results
    out_dir/gx/                   the file-backed GX project (generated suites as JSON, raw results)

GX 1.24 meets pandas 3 badly in one place: its dtype comparison knows neither the `str` dtype nor
tz-aware `datetime64` dtypes, so string and timestamp columns are handed to GX as `object` columns, where
`expect_column_values_to_be_in_type_list` checks every value's Python type (`str`, `Timestamp`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cscnn.config import ValidationConfig
from cscnn.data import schema
from cscnn.errors import DataContractError
from cscnn.files import atomic_dir, write_json

RESULT_FILE = "validation.json"
DOCS_DIR = "data_docs"
GX_DIR = "gx"
IMAGES_TABLE = "images"
# Laplace smoothing of the previous day's category counts: a category that had no impressions yesterday
# keeps a finite KL divergence instead of +inf.
DRIFT_SMOOTHING = 1.0
# Images are only decoded to prove they decode; a tiny target size keeps the resize cheap.
IMAGE_PROBE_SIZE = 8
PARTIAL_UNEXPECTED = 10  # unexpected values GX keeps per failed expectation
SHOW_UNEXPECTED = 5  # of which the human-readable details show this many

# dtype names GX compares numeric columns against (string/timestamp columns are checked value by value).
_INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
_FLOAT_TYPES = ["float16", "float32", "float64", *_INT_TYPES[:-1]]
_VALUE_TYPES = {"string": ["str"], "timestamp": ["Timestamp"], "int": _INT_TYPES, "float": _FLOAT_TYPES}


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

    def to_dict(self) -> dict:
        out = asdict(self)
        out["result_path"] = str(self.result_path)
        out["docs_path"] = str(self.docs_path) if self.docs_path is not None else None
        return out


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------------------------
# The suites, generated from the contract


def contract_expectations(spec: schema.TableSpec, min_rows: int = 1, max_rows: int | None = None) -> list:
    """The GX expectations that the contract in `spec` implies, one group per column, then the key."""
    import great_expectations.expectations as gxe

    exps: list = [gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows)]
    for col in spec.columns:
        exps += [
            gxe.ExpectColumnToExist(column=col.name),
            gxe.ExpectColumnValuesToNotBeNull(column=col.name),
            gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=_VALUE_TYPES[col.kind]),
        ]
        if col.kind == "string":
            exps.append(gxe.ExpectColumnValueLengthsToBeBetween(column=col.name, min_value=1))
        if col.allowed is not None:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.allowed)))
        if col.min is not None or col.max is not None:
            exps.append(gxe.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min, max_value=col.max))
    if len(spec.key) == 1:
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=spec.key[0]))
    else:
        exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(spec.key)))
    return exps


def day_expectations(day: str, cfg: ValidationConfig, expected_mix: dict[str, float] | None) -> list:
    """Impression checks beyond the column contract: CTR, the day, references, category drift."""
    import great_expectations.expectations as gxe

    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    exps = [
        gxe.ExpectColumnMeanToBeBetween(
            column=schema.LABEL, min_value=cfg.min_ctr, max_value=cfg.max_ctr, description="mean CTR of the day"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="ts", min_value=start, max_value=end, description=f"every impression is on {day} (UTC)"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="item_id_in_items", value_set=[True], description=f"item_id is in {schema.ITEMS_FILE}"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="user_id_in_users", value_set=[True], description=f"user_id is in {schema.USERS_FILE}"
        ),
    ]
    if expected_mix is not None:
        exps.append(
            gxe.ExpectColumnKLDivergenceToBeLessThan(
                column="category",
                partition_object={"values": list(expected_mix), "weights": list(expected_mix.values())},
                threshold=cfg.max_category_drift,
                description="category mix of the day's impressions vs the previous day's (KL divergence)",
            )
        )
    return exps


def image_expectations() -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeInSet(
            column="image_ok", value_set=[True], description="every catalogue image exists and decodes"
        )
    ]


# --------------------------------------------------------------------------------------------------------------
# Reading the raw files (never through World, which raises on the first problem)


def _read_day(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataContractError(f"{path}: impression file not found")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DataContractError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc


def _read_optional(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """A table that may be broken: (frame, None) or (None, why it cannot be read)."""
    if not path.is_file():
        return None, f"{path}: file not found"
    try:
        return pd.read_parquet(path), None
    except Exception as exc:
        return None, f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})"


def _for_gx(df: pd.DataFrame, spec: schema.TableSpec) -> pd.DataFrame:
    """A copy GX can type-check: string/timestamp contract columns as object columns (see module doc)."""
    out = df.reset_index(drop=True).copy()
    for col in spec.columns:
        if col.kind in ("string", "timestamp") and col.name in out.columns:
            out[col.name] = out[col.name].astype(object)
    return out


def _category_mix(impressions: pd.DataFrame, categories: pd.Series) -> dict[str, float]:
    if "item_id" not in impressions.columns:
        return {}
    cats = impressions["item_id"].map(categories).dropna()
    if cats.empty:
        return {}
    return {str(k): float(v) for k, v in cats.value_counts(normalize=True).sort_index().items()}


def _check_images(items: pd.DataFrame, images_dir: Path) -> pd.DataFrame:
    from cscnn.data.images import load_image

    rows = []
    ids = items["item_id"] if "item_id" in items.columns else pd.Series([None] * len(items))
    files = items["image"] if "image" in items.columns else pd.Series([None] * len(items))
    for item_id, rel in zip(ids, files, strict=True):
        problem = None
        if not isinstance(rel, str) or not rel:
            problem = "no image file named in items.parquet"
        else:
            try:
                load_image(images_dir / rel, IMAGE_PROBE_SIZE)
            except Exception as exc:  # ImageError, or anything else a broken file provokes
                problem = str(exc)
        rows.append({"item_id": item_id, "image": rel, "image_ok": problem is None, "problem": problem or ""})
    return pd.DataFrame(rows, columns=["item_id", "image", "image_ok", "problem"])


# --------------------------------------------------------------------------------------------------------------
# Turning GX results into our failures


def _exception_message(result: Any) -> str | None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
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
    return f"failed{expected}"


def _failures(table: str, validation: Any, present: list[str], columns: list[str]) -> list[dict]:
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


# --------------------------------------------------------------------------------------------------------------
# The entry point


def validate_day(
    world_dir: Path, day: str, out_dir: Path, cfg: ValidationConfig, previous_day: str | None = None
) -> ValidationReport:
    """Validate the impressions of `day` (plus catalogue, users, images) with Great Expectations.

    Returns a report listing every failed expectation; raises `DataContractError` only when the day's file
    is missing or unreadable. Writes `out_dir/validation.json` and the data docs under `out_dir/data_docs`.
    """
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    if not schema.is_day(day):
        raise DataContractError(f"{day!r}: not a YYYY-MM-DD day")
    day_path = schema.impressions_path(world_dir, day)
    impressions = _read_day(day_path)

    failures: list[dict] = []
    skipped: list[str] = []
    tables: dict[str, pd.DataFrame] = {}
    for spec, name in ((schema.ITEMS, schema.ITEMS_FILE), (schema.USERS, schema.USERS_FILE)):
        df, problem = _read_optional(world_dir / name)
        if df is None:
            failures.append(
                {
                    "table": spec.name,
                    "expectation": "file_readable",
                    "column": None,
                    "details": problem,
                    "description": f"{name} can be read",
                }
            )
            df = pd.DataFrame({c: pd.Series(dtype=object) for c in spec.names})
        tables[spec.name] = df
    items, users = tables["items"], tables["users"]
    known_items = items["item_id"] if "item_id" in items.columns else pd.Series(dtype=object)
    known_users = users["user_id"] if "user_id" in users.columns else pd.Series(dtype=object)
    item_category = (
        items.dropna(subset=["item_id", "category"])
        .drop_duplicates("item_id")
        .set_index("item_id")["category"]
        .astype(str)
        if {"item_id", "category"} <= set(items.columns)
        else pd.Series(dtype=object)
    )

    # The impressions as GX sees them: the raw columns plus the derived ones the day-level checks need.
    frame = _for_gx(impressions, schema.IMPRESSIONS)
    if "item_id" in frame.columns:
        frame["item_id_in_items"] = frame["item_id"].isin(known_items)
        frame["category"] = frame["item_id"].map(item_category).astype(object)
    if "user_id" in frame.columns:
        frame["user_id_in_users"] = frame["user_id"].isin(known_users)

    statistics: dict[str, Any] = {
        "rows": len(impressions),
        "ctr": _mean_ctr(impressions),
        "category_mix": _category_mix(impressions, item_category),
        "n_items": len(items),
        "n_users": len(users),
        "unknown_item_rows": int((~frame["item_id_in_items"]).sum()) if "item_id_in_items" in frame else None,
        "unknown_user_rows": int((~frame["user_id_in_users"]).sum()) if "user_id_in_users" in frame else None,
    }
    expected_mix, drift = _previous_mix(world_dir, previous_day, item_category, cfg.max_category_drift)
    statistics["drift"] = drift
    if expected_mix is None:
        skipped.append(f"category drift: {drift['skipped']}")

    suites: dict[str, tuple[list, pd.DataFrame, list[str]]] = {
        "impressions": (
            contract_expectations(schema.IMPRESSIONS, cfg.min_rows, cfg.max_rows)
            + day_expectations(day, cfg, expected_mix),
            frame,
            ["request_id", "user_id", "item_id"],  # identify an impression in failure examples
        ),
        "items": (contract_expectations(schema.ITEMS), _for_gx(items, schema.ITEMS), list(schema.ITEMS.key)),
        "users": (contract_expectations(schema.USERS), _for_gx(users, schema.USERS), list(schema.USERS.key)),
    }
    if cfg.check_images:
        images = _check_images(items, world_dir / schema.IMAGES_DIR)
        statistics["images"] = {"checked": len(images), "bad": int((~images["image_ok"]).sum())}
        suites[IMAGES_TABLE] = (image_expectations(), images, ["item_id", "image", "problem"])
    else:
        statistics["images"] = {"skipped": "check_images is False"}
        skipped.append("images: check_images is False")

    # Columns as the files have them (for messages; the GX frames also hold derived columns).
    frame_columns = {t: [str(c) for c in df.columns] for t, (_, df, _) in suites.items()}
    raw_columns = {**frame_columns, "impressions": [str(c) for c in impressions.columns]}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir / GX_DIR) as gx_root, atomic_dir(out_dir / DOCS_DIR) as docs_root:
        results = _run_gx(gx_root, docs_root, day, suites)
        for table, validation in results.items():
            failures += _failures(table, validation, frame_columns[table], raw_columns[table])
            if table == "impressions" and expected_mix is not None:
                statistics["drift"]["kl_divergence"] = _kl_observed(validation)
        statistics.update(
            n_expectations=sum(len(v.results) for v in results.values()),
            n_failed=len(failures),
            tables={
                t: {"n_expectations": len(v.results), "n_failed": sum(not r.success for r in v.results)}
                for t, v in results.items()
            },
            gx_version=_gx_version(),
        )
        report = ValidationReport(
            day=day,
            success=not failures,
            failures=failures,
            statistics=statistics,
            result_path=out_dir / RESULT_FILE,
            docs_path=out_dir / DOCS_DIR / "index.html",
            skipped=skipped,
        )
        _write_docs_index(docs_root, report, results, frame_columns, raw_columns)
    write_json(
        report.result_path,
        _json_safe({"report": report.to_dict(), "gx_results": {t: v.to_json_dict() for t, v in results.items()}}),
    )
    return report


def _mean_ctr(impressions: pd.DataFrame) -> float | None:
    if schema.LABEL not in impressions.columns:
        return None
    clicks = pd.to_numeric(impressions[schema.LABEL], errors="coerce")
    return float(clicks.mean()) if clicks.notna().any() else None


def _previous_mix(
    world_dir: Path, previous_day: str | None, item_category: pd.Series, threshold: float
) -> tuple[dict[str, float] | None, dict]:
    """The expected category partition (smoothed previous-day mix over all catalogue categories)."""
    if previous_day is None:
        return None, {"skipped": "no previous day given"}
    path = schema.impressions_path(world_dir, previous_day)
    previous, problem = _read_optional(path)
    if previous is None:
        return None, {"skipped": f"previous day unreadable: {problem}"}
    if "item_id" not in previous.columns:
        return None, {"skipped": f"{path}: no item_id column"}
    counts = previous["item_id"].map(item_category).dropna().value_counts()
    categories = sorted(set(item_category) | set(counts.index))
    if not categories:
        return None, {"skipped": "no categories in the catalogue"}
    smoothed = counts.reindex(categories, fill_value=0).astype(float) + DRIFT_SMOOTHING
    weights = smoothed / smoothed.sum()
    mix = {str(k): float(v) for k, v in weights.items()}
    previous_mix = {str(k): float(v) for k, v in (counts / max(counts.sum(), 1)).sort_index().items()}
    return mix, {
        "previous_day": previous_day,
        "previous_category_mix": previous_mix,
        "threshold": threshold,
        "smoothing": DRIFT_SMOOTHING,
        "kl_divergence": None,
    }


def _kl_observed(validation: Any) -> float | None:
    for result in validation.results:
        if result.expectation_config.type == "expect_column_kl_divergence_to_be_less_than":
            value = (result.result or {}).get("observed_value")
            if value is None and _exception_message(result) is None:
                return math.inf
            return None if value is None else float(value)
    return None


def _gx_version() -> str:
    import great_expectations as gx

    return gx.__version__


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


def _run_gx(gx_root: Path, docs_root: Path, day: str, suites: dict) -> dict:
    """Run one GX validation per table in a file-backed context at `gx_root`; data docs go to `docs_root`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=gx_root)
    context.variables.analytics_enabled = False
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        "cscnn",
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_root)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    context.variables.save()
    source = context.data_sources.add_pandas(f"world_{day}")
    results = {}
    for table, (expectations, df, index_columns) in suites.items():
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(day)
        suite = gx.ExpectationSuite(name=table, expectations=expectations)
        suite = context.suites.add(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{table}_{day}", data=batch, suite=suite)
        )
        validation = definition.run(
            batch_parameters={"dataframe": df},
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": PARTIAL_UNEXPECTED,
                "unexpected_index_column_names": [c for c in index_columns if c in df.columns],
            },
        )
        order = {e.id: i for i, e in enumerate(suite.expectations)}
        validation.results.sort(key=lambda r: order.get(r.expectation_config.id, len(order)))
        results[table] = validation
    context.build_data_docs()
    return results


# --------------------------------------------------------------------------------------------------------------
# Data docs: GX renders one static page per suite and per validation result, but its index lists them only
# through JavaScript loaded from CDNs (blank offline). Our index.html is plain HTML: every expectation with its
# result, linking to GX's pages; GX's own index stays next to it as gx_index.html.


def _write_docs_index(
    docs_root: Path, report: ValidationReport, results: dict, frame_columns: dict, raw_columns: dict
) -> None:
    import html

    gx_index = docs_root / "index.html"
    if gx_index.is_file():
        gx_index.replace(docs_root / "gx_index.html")
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
    other = [f for f in report.failures if f["table"] not in results]
    if other:
        parts.append("<h2>Not validated</h2><ul>")
        parts += [f"<li>{html.escape(f['table'])}: {html.escape(str(f['details']))}</li>" for f in other]
        parts.append("</ul>")
    for table, validation in results.items():
        pages = sorted((docs_root / "validations" / table).rglob("*.html"))
        links = [f'<a href="expectations/{html.escape(table)}.html">suite</a>']
        links += [f'<a href="{html.escape(p.relative_to(docs_root).as_posix())}">GX result page</a>' for p in pages]
        verdict = "passed" if validation.success else "FAILED"
        parts.append(f"<h2>{html.escape(table)}: {verdict} ({' | '.join(links)})</h2>")
        parts.append("<table><tr><th>status</th><th>expectation</th><th>column</th><th>result</th></tr>")
        for result in sorted(validation.results, key=lambda r: r.success):
            config = result.expectation_config
            column = config.kwargs.get("column") or config.kwargs.get("column_list") or ""
            detail = (
                _passed_text(result) if result.success else _details(result, frame_columns[table], raw_columns[table])
            )
            name = config.type + (f" &mdash; {html.escape(config.description)}" if config.description else "")
            parts.append(
                f'<tr class="{"ok" if result.success else "fail"}"><td>{"ok" if result.success else "FAIL"}</td>'
                f"<td>{name}</td><td>{html.escape(str(column))}</td><td>{html.escape(detail)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    (docs_root / "index.html").write_text("\n".join(parts) + "\n")


def _passed_text(result: Any) -> str:
    res = result.result or {}
    expected = _expected_text(dict(result.expectation_config.kwargs))
    if "observed_value" in res:
        return f"observed {res['observed_value']} [{expected}]"
    if "element_count" in res:
        return f"{res['element_count']} rows checked [{expected}]"
    return f"passed [{expected}]" if expected else "passed"
