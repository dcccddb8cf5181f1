"""The data contract, written once.

Every producer (synthetic generator, Amazon importer) and every consumer (loaders, trainer, later the
Great Expectations suite and the ranking service) reads the column names, kinds and ranges from here.

A *world* is a folder::

    items.parquet                   the ad catalogue, one row per item
    users.parquet                   user features, one row per user
    images/                         one image file per item (any size/format Pillow decodes)
    impressions/YYYY-MM-DD.parquet  the impression log, one file per day
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cscnn.dates import is_day  # noqa: F401 - the contract's day check, used as schema.is_day
from cscnn.errors import DataContractError

Kind = Literal["string", "int", "float", "timestamp"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    description: str
    min: float | None = None
    max: float | None = None
    allowed: tuple | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    description: str
    optional: tuple[Column, ...] = ()  # checked and kept when present, never required

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def validate(self, df: pd.DataFrame, source: str) -> pd.DataFrame:
        """Check `df` against the contract and return it with canonical dtypes and column order.

        Raises `DataContractError` naming `source`, the column and the first offending row (0-based).
        Optional columns are checked and kept when present; other extra columns are left out (not an error).
        """
        missing = [c for c in self.names if c not in df.columns]
        if missing:
            raise DataContractError(
                f"{source}: missing column(s) {missing} for table '{self.name}'; expected columns {self.names}"
            )
        out = {}
        for col in self.columns + tuple(c for c in self.optional if c.name in df.columns):
            out[col.name] = _check_column(df[col.name], col, source)
        result = pd.DataFrame(out).reset_index(drop=True)
        if len(result):
            dup = result.duplicated(list(self.key), keep="first").to_numpy()
            if dup.any():
                row = int(np.flatnonzero(dup)[0])
                values = {k: result.at[row, k] for k in self.key}
                raise DataContractError(
                    f"{source}: row {row}: duplicate key {values} for table '{self.name}' "
                    f"(key columns {list(self.key)} must be unique)"
                )
        return result


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _show(value: object) -> str:
    """A value as a user wrote it (`2`, not `np.int64(2)`)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_column(series: pd.Series, col: Column, source: str) -> pd.Series:
    where = f"{source}: column '{col.name}'"
    values = series.reset_index(drop=True)
    null = values.isna().to_numpy()
    if null.any():
        raise DataContractError(f"{where}: row {_first_row(null)}: missing value (nulls are not allowed)")
    if col.kind == "string" and not isinstance(values.dtype, pd.StringDtype):  # a string dtype holds only str
        is_str = values.map(lambda v: isinstance(v, str)).to_numpy()
        if not is_str.all():
            row = _first_row(~is_str)
            raise DataContractError(
                f"{where}: row {row}: expected a string, got {type(values[row]).__name__} {_show(values[row])} "
                f"(cast ids to str before writing)"
            )
        empty = (values.str.len() == 0).to_numpy()
        if empty.any():
            raise DataContractError(f"{where}: row {_first_row(empty)}: empty string")
        values = values.astype(object)
    elif col.kind == "int":
        if not (pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values)):
            raise DataContractError(f"{where}: dtype {values.dtype}, expected an integer dtype")
        values = values.astype("int64")
    elif col.kind == "float":
        if not (pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values)):
            raise DataContractError(f"{where}: dtype {values.dtype}, expected a numeric dtype")
        values = values.astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            row = _first_row(bad)
            raise DataContractError(f"{where}: row {row}: non-finite value {_show(values[row])}")
    elif col.kind == "timestamp":
        if not pd.api.types.is_datetime64_any_dtype(values):
            raise DataContractError(f"{where}: dtype {values.dtype}, expected a timestamp dtype")
        values = pd.to_datetime(values, utc=True)
    if col.allowed is not None:
        bad = ~values.isin(col.allowed).to_numpy()
        if bad.any():
            row = _first_row(bad)
            raise DataContractError(
                f"{where}: row {row}: value {_show(values[row])} not in allowed set {list(col.allowed)}"
            )
    if col.min is not None:
        bad = (values < col.min).to_numpy()
        if bad.any():
            row = _first_row(bad)
            raise DataContractError(f"{where}: row {row}: value {_show(values[row])} is below the minimum {col.min}")
    if col.max is not None:
        bad = (values > col.max).to_numpy()
        if bad.any():
            row = _first_row(bad)
            raise DataContractError(f"{where}: row {row}: value {_show(values[row])} is above the maximum {col.max}")
    return values


IMPRESSIONS = TableSpec(
    name="impressions",
    description="One row per ad shown: who saw which item, where, and whether they clicked.",
    key=("request_id", "item_id"),
    columns=(
        Column("ts", "timestamp", "UTC time the ad was shown; its date must equal the file's day"),
        Column("request_id", "string", "one ranking request; its impressions share this id"),
        Column("user_id", "string", "the user; must be in users.parquet"),
        Column("item_id", "string", "the ad shown; must be in items.parquet"),
        Column("position", "int", "1-based slot on the page", min=1, max=1000),
        Column("device", "string", "context: the device class of the request"),
        Column("click", "int", "label: 1 if clicked", allowed=(0, 1)),
    ),
)

ITEMS = TableSpec(
    name="items",
    description="The ad catalogue: one row per item, with its category and its image file.",
    key=("item_id",),
    columns=(
        Column("item_id", "string", "unique item id"),
        Column("category", "string", "the item's category; CSCNN conditions its attention on it"),
        Column("image", "string", "image file path, relative to the world's images/ folder"),
        Column("brand", "string", "advertiser brand ('unknown' when not known)"),
        Column("price", "float", "item price, >= 0", min=0.0),
    ),
    optional=(
        Column(
            "available_from",
            "string",
            "optional: YYYY-MM-DD day the ad enters the catalogue; the daily loop versions (and embeds) an item "
            "from that day on. Without it every item counts as available from the first day.",
        ),
    ),
)

USERS = TableSpec(
    name="users",
    description="User features: one row per user.",
    key=("user_id",),
    columns=(
        Column("user_id", "string", "unique user id"),
        Column("age_group", "string", "coarse age group ('unknown' when not known)"),
        Column("gender", "string", "'f', 'm' or 'unknown'"),
    ),
)

TABLES = (IMPRESSIONS, ITEMS, USERS)

# Features the CTR network embeds, each from one table's column. `hour` is derived from `ts`.
SPARSE_FEATURES: tuple[str, ...] = (
    "user_id",
    "age_group",
    "gender",
    "item_id",
    "category",
    "brand",
    "device",
    "position",
    "hour",
)
DENSE_FEATURES: tuple[str, ...] = ("log_price",)
LABEL = "click"

AVAILABLE_FROM = "available_from"  # the optional items column
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
IMAGES_DIR = "images"
IMPRESSIONS_DIR = "impressions"


def impressions_path(root: Path, day: str) -> Path:
    return Path(root) / IMPRESSIONS_DIR / f"{day}.parquet"


def contract_markdown() -> str:
    """The contract as Markdown tables (docs/data_contract.md is generated from this)."""
    lines: list[str] = []
    for spec in TABLES:
        lines += [f"### `{spec.name}`", "", spec.description, "", f"Unique key: `{', '.join(spec.key)}`", ""]
        lines += ["| column | kind | constraint | meaning |", "|---|---|---|---|"]
        for c in spec.columns + spec.optional:
            rule = []
            if c.allowed is not None:
                rule.append(f"in {list(c.allowed)}")
            if c.min is not None:
                rule.append(f">= {c.min}")
            if c.max is not None:
                rule.append(f"<= {c.max}")
            default = "optional" if c in spec.optional else "not null"
            lines.append(f"| `{c.name}` | {c.kind} | {', '.join(rule) or default} | {c.description} |")
        lines.append("")
    return "\n".join(lines)
