"""Great Expectations validation of one day: a good day passes, each kind of damage fails by name."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cscnn.config import ValidationConfig
from cscnn.data import schema
from cscnn.errors import DataContractError
from cscnn.tools.validation import ValidationReport, validate_day
from cscnn.tools.validation.suite import contract_expectations

DAY, PREVIOUS = "2026-01-02", "2026-01-01"
CFG = ValidationConfig()


@pytest.fixture(scope="module")
def good(tiny_world, tmp_path_factory) -> tuple[ValidationReport, dict[str, str]]:
    before = _digest(tiny_world)
    report = validate_day(tiny_world, DAY, tmp_path_factory.mktemp("out"), CFG, previous_day=PREVIOUS)
    return report, before


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _copy(world_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shared, read-only tiny world, to damage."""
    dst = tmp_path / "world"
    shutil.copytree(world_dir, dst)
    return dst


def _day(world: Path, day: str = DAY) -> pd.DataFrame:
    return pd.read_parquet(schema.impressions_path(world, day))


def _write_day(world: Path, df: pd.DataFrame, day: str = DAY) -> None:
    df.to_parquet(schema.impressions_path(world, day), index=False)  # raw write: no contract check


def _failed(report: ValidationReport) -> set[tuple]:
    return {
        (f["table"], f["expectation"], f["column"] if isinstance(f["column"], str) else None) for f in report.failures
    }


def _failure(report: ValidationReport, table: str, expectation: str, column: str | None) -> dict:
    for f in report.failures:
        if f["table"] == table and f["expectation"] == expectation and (column is None or f["column"] == column):
            return f
    raise AssertionError(f"no failure {table}/{expectation}/{column}; got:\n{report.summary()}")


# ---------------------------------------------------------------------------------------------------------------


def test_good_day_passes(good, tiny_world) -> None:
    report, before = good
    assert report.success, report.summary()
    assert report.failures == []
    stats = report.statistics
    assert stats["rows"] == len(_day(tiny_world))
    assert CFG.min_ctr <= stats["ctr"] <= CFG.max_ctr
    assert set(stats["category_mix"]) == set(pd.read_parquet(tiny_world / schema.ITEMS_FILE)["category"])
    assert 0 <= stats["drift"]["kl_divergence"] < CFG.max_category_drift
    assert stats["images"] == {"checked": len(pd.read_parquet(tiny_world / schema.ITEMS_FILE)), "bad": 0}
    assert set(stats["tables"]) == {"impressions", "items", "users", "images"}
    assert stats["n_failed"] == 0 and stats["n_expectations"] >= 60
    assert _digest(tiny_world) == before, "validation must not touch the world folder"


def test_suite_is_generated_from_the_contract(good) -> None:
    report, _ = good
    for spec in schema.TABLES:
        exps = contract_expectations(spec)
        by_column: dict[str, set[str]] = {}
        for e in exps:
            if getattr(e, "column", None):
                by_column.setdefault(e.column, set()).add(e.expectation_type)
        assert set(by_column) == set(spec.names)
        for col in spec.columns:
            kinds = by_column[col.name]
            assert {"expect_column_to_exist", "expect_column_values_to_not_be_null"} <= kinds
            assert ("expect_column_values_to_be_in_set" in kinds) == (col.allowed is not None)
            assert ("expect_column_values_to_be_between" in kinds) == (col.min is not None or col.max is not None)
        # the suite GX stored is the generated one
        stored = json.loads(
            (report.result_path.parent / "gx" / "gx" / "expectations" / f"{spec.name}.json").read_text()
        )
        stored_columns = {e["kwargs"].get("column") for e in stored["expectations"]}
        assert set(spec.names) <= stored_columns


def test_report_json_and_data_docs(good) -> None:
    report, _ = good

    def no_constants(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    data = json.loads(report.result_path.read_text(), parse_constant=no_constants)
    assert data["report"] == json.loads(json.dumps(report.to_dict()))
    assert data["report"]["success"] is True
    assert set(data["gx_results"]) == {"impressions", "items", "users", "images"}
    assert all(r["success"] for t in data["gx_results"].values() for r in t["results"])
    assert report.docs_path is not None and report.docs_path.name == "index.html"
    page = report.docs_path.read_text()
    assert "<table>" in page and "expect_column_kl_divergence_to_be_less_than" in page
    assert (report.docs_path.parent / "expectations" / "impressions.html").is_file()
    assert list((report.docs_path.parent / "validations" / "impressions").rglob("*.html"))


DAMAGE = {
    "click_value_2": ("impressions", "expect_column_values_to_be_in_set", "click", "2"),
    "null_user_id": ("impressions", "expect_column_values_to_not_be_null", "user_id", "1 of"),
    "duplicate_rows": ("impressions", "expect_compound_columns_to_be_unique", None, "6 of"),
    "unknown_item_id": ("impressions", "expect_column_values_to_be_in_set", "item_id_in_items", "i999999"),
    "too_few_rows": ("impressions", "expect_table_row_count_to_be_between", None, "observed 50"),
    "missing_column": ("impressions", "expect_column_to_exist", "device", ""),
    "corrupt_image": ("images", "expect_column_values_to_be_in_set", "image_ok", "cannot decode"),
    "missing_image": ("images", "expect_column_values_to_be_in_set", "image_ok", "not found"),
    "category_drift": ("impressions", "expect_column_kl_divergence_to_be_less_than", "category", "observed"),
    "look_ahead_item": ("impressions", "expect_column_values_to_be_null", "item_available_from_later", "1 of 600"),
}


def _damage(kind: str, world: Path) -> str | None:
    """Break `world` in one way; return a string the failure's details must name (an id or a file)."""
    df = _day(world)
    items = pd.read_parquet(world / schema.ITEMS_FILE)
    if kind == "click_value_2":
        df.loc[7, "click"] = 2
    elif kind == "null_user_id":
        df.loc[3, "user_id"] = None
    elif kind == "duplicate_rows":
        df = pd.concat([df, df.iloc[[0, 1, 2]]], ignore_index=True)
    elif kind == "unknown_item_id":
        df.loc[5, "item_id"] = "i999999"
    elif kind == "too_few_rows":
        df = df.iloc[:50]
    elif kind == "missing_column":
        df = df.drop(columns=["device"])
    elif kind in ("corrupt_image", "missing_image"):
        path = world / schema.IMAGES_DIR / items["image"].iloc[0]
        if kind == "corrupt_image":
            path.write_bytes(b"this is not a PNG file")
        else:
            path.unlink()
        return str(items["item_id"].iloc[0])
    elif kind == "category_drift":
        # every impression now shows an item of one category (distinct items within a request)
        pool = items.loc[items["category"] == items["category"].iloc[0], "item_id"].to_numpy()
        slot = df.groupby("request_id").cumcount().to_numpy()
        df["item_id"] = pool[slot % len(pool)]
    elif kind == "look_ahead_item":
        # one impression shows an ad that only enters the catalogue after the day (it is in items.parquet)
        late = items.loc[items[schema.AVAILABLE_FROM] > DAY, "item_id"]
        late = late[~late.isin(df.loc[df["request_id"] == df.at[5, "request_id"], "item_id"])].iloc[0]
        df.loc[5, "item_id"] = late
        _write_day(world, df)
        return str(late)
    _write_day(world, df)
    return None


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damage_fails_with_the_right_expectation(kind, tiny_world, tmp_path) -> None:
    world = _copy(tiny_world, tmp_path)
    must_name = _damage(kind, world)
    before = _digest(world)
    report = validate_day(world, DAY, tmp_path / "out", CFG, previous_day=PREVIOUS)
    assert _digest(world) == before, "validation must not touch the world folder"
    assert not report.success
    table, expectation, column, text = DAMAGE[kind]
    failure = _failure(report, table, expectation, column)
    assert text in failure["details"], failure
    if must_name:
        assert must_name in failure["details"], failure
    summary = report.summary()
    assert "FAILED" in summary and all(f["expectation"] in summary for f in report.failures)
    if kind == "category_drift":
        assert _failed(report) == {(table, expectation, column)}, report.summary()
        assert report.statistics["drift"]["kl_divergence"] > CFG.max_category_drift
    saved = json.loads(report.result_path.read_text())
    assert saved["report"]["success"] is False
    assert len(saved["report"]["failures"]) == len(report.failures)


def test_all_problems_are_reported_together(tiny_world, tmp_path) -> None:
    world = _copy(tiny_world, tmp_path)
    for kind in ("click_value_2", "null_user_id", "unknown_item_id", "corrupt_image"):
        _damage(kind, world)
    (world / schema.USERS_FILE).write_bytes(b"garbage")
    report = validate_day(world, DAY, tmp_path / "out", CFG, previous_day=PREVIOUS)
    failed = _failed(report)
    assert ("users", "file_readable", None) in failed
    for kind in ("click_value_2", "null_user_id", "unknown_item_id", "corrupt_image"):
        table, expectation, column, _ = DAMAGE[kind]
        assert (table, expectation, column) in failed, report.summary()


def test_without_previous_day_or_images_those_checks_are_skipped(tiny_world, tmp_path) -> None:
    cfg = ValidationConfig(check_images=False)
    report = validate_day(tiny_world, DAY, tmp_path / "out", cfg, previous_day=None)
    assert report.success, report.summary()
    assert "skipped" in report.statistics["drift"] and "skipped" in report.statistics["images"]
    assert "images" not in report.statistics["tables"]
    assert "skipped" in report.summary()


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_unreadable_day_file_raises_naming_the_file(broken, tiny_world, tmp_path) -> None:
    world = _copy(tiny_world, tmp_path)
    path = schema.impressions_path(world, DAY)
    if broken == "missing":
        path.unlink()
    else:
        path.write_bytes(b"not parquet")
    with pytest.raises(DataContractError, match=str(path.name)):
        validate_day(world, DAY, tmp_path / "out", CFG)
