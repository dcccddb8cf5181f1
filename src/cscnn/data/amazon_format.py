"""Reading McAuley's Amazon review and metadata files (2014 or 2018 release, plain or gzipped JSON lines).

Only parsing lives here: `cscnn.data.amazon` turns what these functions return into a world.
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cscnn.errors import DataContractError

UNKNOWN = "unknown"
PRICE_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Catalogue:
    """Metadata of every asin in the meta file (first record wins)."""

    items: pd.DataFrame  # asin (index), category, brand, price
    records: int
    duplicates: int
    prices_unparsed: int


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line; gzip is detected by its magic bytes.

    Lines are strict JSON (2018 release) or Python dict literals (2014 metadata); anything else raises
    `DataContractError` naming the file and the line.
    """
    if not path.is_file():
        raise DataContractError(f"{path}: file not found")
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    number = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") if gzipped else path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if text:
                    yield number, _parse_line(text, path, number)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataContractError(f"{path}: line {number + 1}: cannot read ({type(exc).__name__}: {exc})") from exc


def _parse_line(text: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise DataContractError(
                f"{path}: line {number}: neither JSON nor a Python dict literal ({type(exc).__name__}): {text[:80]!r}"
            ) from exc
    if not isinstance(record, dict):
        raise DataContractError(f"{path}: line {number}: expected an object, got {type(record).__name__}")
    return record


def _field(record: dict, name: str, path: Path, number: int) -> object:
    value = record.get(name)
    if value is None or value == "":
        raise DataContractError(f"{path}: line {number}: missing field '{name}'")
    return value


def read_reviews(path: Path) -> pd.DataFrame:
    """user_id, item_id, time (unix seconds), line: one row per review line."""
    users, asins, times, lines = [], [], [], []
    for number, record in json_lines(path):
        stamp = _field(record, "unixReviewTime", path, number)
        try:
            seconds = int(stamp)
        except (TypeError, ValueError) as exc:
            raise DataContractError(f"{path}: line {number}: unixReviewTime {stamp!r} is not an integer") from exc
        users.append(str(_field(record, "reviewerID", path, number)))
        asins.append(str(_field(record, "asin", path, number)))
        times.append(seconds)
        lines.append(number)
    if not users:
        raise DataContractError(f"{path}: no reviews")
    return pd.DataFrame({"user_id": users, "item_id": asins, "time": times, "line": lines})


def read_meta(path: Path, category_level: int = -1) -> Catalogue:
    """Category (at `category_level` of the first path), brand and price of each asin."""
    rows: dict[str, tuple[str, str, float]] = {}
    records = duplicates = unparsed = 0
    for number, record in json_lines(path):
        records += 1
        asin = str(_field(record, "asin", path, number))
        if asin in rows:
            duplicates += 1
            continue
        price, parsed = _price(record.get("price"))
        unparsed += not parsed
        category = _category(_category_path(record, path, number), category_level)
        rows[asin] = (category, _text(record.get("brand")), price)
    items = pd.DataFrame.from_dict(rows, orient="index", columns=["category", "brand", "price"])
    return Catalogue(items=items, records=records, duplicates=duplicates, prices_unparsed=unparsed)


def _text(value: object) -> str:
    text = html.unescape(str(value)).strip() if value is not None else ""
    return text or UNKNOWN


def _category_path(record: dict, path: Path, number: int) -> list[str]:
    """2018: `category` is a list of str; 2014: `categories` is a list of such lists (the first one is used)."""
    raw = record.get("category", record.get("categories")) or []
    if not isinstance(raw, list):
        raise DataContractError(f"{path}: line {number}: category path must be a list, got {type(raw).__name__}")
    if raw and isinstance(raw[0], list):
        raw = raw[0]
    return [name for name in (_text(part) for part in raw) if name != UNKNOWN]


def _category(names: list[str], level: int) -> str:
    if not names:
        return UNKNOWN
    index = min(level, len(names) - 1) if level >= 0 else max(len(names) + level, 0)
    return names[index]


def _price(value: object) -> tuple[float, bool]:
    """(price, parsed): floats (2014) or strings like '$12.99' / '$10.99 - $15.99' (2018); missing -> 0.0."""
    if value is None or value == "":
        return 0.0, True
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        match = PRICE_NUMBER.search(str(value))
        if match is None:
            return 0.0, False
        number = float(match.group().replace(",", ""))
    if not math.isfinite(number) or number < 0:
        return 0.0, False
    return number, True
