"""Great Expectations validation of one day of data (the first step of the daily loop): `validate_day`.

The suites come from `cscnn.tools.validation.suite` (generated from the data contract, plus the day-level
checks). Validation reads the raw Parquet files with pandas (not `World`, which stops at the first problem),
runs every expectation and reports *all* failures; it never raises on bad data. It raises `DataContractError`
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

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cscnn.config import ValidationConfig
from cscnn.data import schema
from cscnn.errors import DataContractError
from cscnn.files import atomic_dir, write_json
from cscnn.tools.validation.docs import _write_docs_index
from cscnn.tools.validation.report import (
    RESULT_FILE,
    ValidationReport,
    _exception_message,
    _failures,
    _json_safe,
)
from cscnn.tools.validation.suite import LOOK_AHEAD, contract_expectations, day_expectations, image_expectations

DOCS_DIR = "data_docs"
GX_DIR = "gx"
IMAGES_TABLE = "images"
# Laplace smoothing of the previous day's category counts: a category that had no impressions yesterday
# keeps a finite KL divergence instead of +inf.
DRIFT_SMOOTHING = 1.0
# Images are only decoded to prove they decode; a tiny target size keeps the resize cheap.
IMAGE_PROBE_SIZE = 8
PARTIAL_UNEXPECTED = 10  # unexpected values GX keeps per failed expectation

# table -> (expectations, the frame GX validates, columns that identify a row in failure examples)
Suites = dict[str, tuple[list, pd.DataFrame, list[str]]]


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
    impressions = _read_day(schema.impressions_path(world_dir, day))
    items, users, failures = _read_catalogue(world_dir)
    skipped: list[str] = []
    item_category = _item_categories(items)
    frame = _impressions_frame(impressions, items, users, item_category, day)
    statistics = _statistics(impressions, frame, items, users, item_category)
    expected_mix, drift = _previous_mix(world_dir, previous_day, item_category, cfg.max_category_drift)
    statistics["drift"] = drift
    if expected_mix is None:
        skipped.append(f"category drift: {drift['skipped']}")

    suites: Suites = {
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

    report, results = _run_suites(
        out_dir, day, suites, [str(c) for c in impressions.columns], failures, statistics, skipped, expected_mix
    )
    write_json(
        report.result_path,
        _json_safe({"report": report.to_dict(), "gx_results": {t: v.to_json_dict() for t, v in results.items()}}),
    )
    return report


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


def _read_catalogue(world_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """(items, users, failures): an unreadable table is a `file_readable` failure and an empty frame."""
    failures: list[dict] = []
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
    return tables["items"], tables["users"], failures


def _for_gx(df: pd.DataFrame, spec: schema.TableSpec) -> pd.DataFrame:
    """A copy GX can type-check: string/timestamp contract columns as object columns (see module doc)."""
    out = df.reset_index(drop=True).copy()
    for col in spec.columns:
        if col.kind in ("string", "timestamp") and col.name in out.columns:
            out[col.name] = out[col.name].astype(object)
    return out


def _item_categories(items: pd.DataFrame) -> pd.Series:
    """item_id -> category (first row per item), empty when the catalogue lacks either column."""
    if not {"item_id", "category"} <= set(items.columns):
        return pd.Series(dtype=object)
    return (
        items.dropna(subset=["item_id", "category"]).drop_duplicates("item_id").set_index("item_id")["category"]
    ).astype(str)


def _impressions_frame(
    impressions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, item_category: pd.Series, day: str
) -> pd.DataFrame:
    """The impressions as GX sees them: the raw columns plus the derived ones the day-level checks need."""
    known_items = items["item_id"] if "item_id" in items.columns else pd.Series(dtype=object)
    known_users = users["user_id"] if "user_id" in users.columns else pd.Series(dtype=object)
    frame = _for_gx(impressions, schema.IMPRESSIONS)
    if "item_id" in frame.columns:
        frame["item_id_in_items"] = frame["item_id"].isin(known_items)
        frame[LOOK_AHEAD] = _not_available_until(frame["item_id"], items, day)
        frame["category"] = frame["item_id"].map(item_category).astype(object)
    if "user_id" in frame.columns:
        frame["user_id_in_users"] = frame["user_id"].isin(known_users)
    return frame


def _not_available_until(item_ids: pd.Series, items: pd.DataFrame, day: str) -> pd.Series:
    """The item's `available_from` where it is after `day` ("never" where it is empty), else None: the look-ahead
    an impression must not have. Versioning keeps an item from that day on (`available_from[:10] <= day`; an
    empty one never), so such an impression would break training on the versioned world. Unknown items are
    `item_id_in_items`'s failure."""
    out = pd.Series(None, index=item_ids.index, dtype=object)
    if not {"item_id", schema.AVAILABLE_FROM} <= set(items.columns):
        return out
    since = items.drop_duplicates("item_id").set_index("item_id")[schema.AVAILABLE_FROM]
    first_day = since.astype("string").str.slice(0, 10).fillna("never")
    shown_since = item_ids.map(first_day).astype("string")
    late = ((shown_since > day) | (shown_since == "never")).fillna(False).to_numpy(dtype=bool)
    out[late] = shown_since[late].astype(object)
    return out


def _statistics(
    impressions: pd.DataFrame, frame: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, item_category: pd.Series
) -> dict[str, Any]:
    return {
        "rows": len(impressions),
        "ctr": _mean_ctr(impressions),
        "category_mix": _category_mix(impressions, item_category),
        "n_items": len(items),
        "n_users": len(users),
        "unknown_item_rows": int((~frame["item_id_in_items"]).sum()) if "item_id_in_items" in frame else None,
        "unknown_user_rows": int((~frame["user_id_in_users"]).sum()) if "user_id_in_users" in frame else None,
        "look_ahead_rows": int(frame[LOOK_AHEAD].notna().sum()) if LOOK_AHEAD in frame else None,
    }


def _mean_ctr(impressions: pd.DataFrame) -> float | None:
    if schema.LABEL not in impressions.columns:
        return None
    clicks = pd.to_numeric(impressions[schema.LABEL], errors="coerce")
    return float(clicks.mean()) if clicks.notna().any() else None


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
# The drift baseline: the previous day's category mix


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


# --------------------------------------------------------------------------------------------------------------
# Running GX


def _run_suites(
    out_dir: Path,
    day: str,
    suites: Suites,
    impression_columns: list[str],
    failures: list[dict],
    statistics: dict[str, Any],
    skipped: list[str],
    expected_mix: dict[str, float] | None,
) -> tuple[ValidationReport, dict]:
    """Run GX on every suite, add its failures and counts to `failures`/`statistics`, write the data docs."""
    # Columns as the files have them (for messages; the GX frames also hold derived columns).
    frame_columns = {t: [str(c) for c in df.columns] for t, (_, df, _) in suites.items()}
    raw_columns = {**frame_columns, "impressions": impression_columns}
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
    return report, results


def _gx_version() -> str:
    import great_expectations as gx

    return gx.__version__


def _run_gx(gx_root: Path, docs_root: Path, day: str, suites: Suites) -> dict:
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
