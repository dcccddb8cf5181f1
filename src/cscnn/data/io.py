"""Read and write contract tables. Reads validate; writes validate first and then land atomically."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cscnn.data import schema
from cscnn.errors import DataContractError
from cscnn.files import atomic_file


def write_table(df: pd.DataFrame, path: Path, spec: schema.TableSpec) -> pd.DataFrame:
    """Validate `df` against `spec` and write it as Parquet (atomically). Returns the canonical frame."""
    path = Path(path)
    clean = spec.validate(df, source=f"{spec.name} table for {path}")
    with atomic_file(path) as tmp:
        clean.to_parquet(tmp, index=False)
    return clean


def read_table(path: Path, spec: schema.TableSpec) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataContractError(f"{path}: file not found (table '{spec.name}')")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DataContractError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    return spec.validate(df, source=str(path))


@dataclass
class World:
    """A validated dataset folder: catalogue, users, image folder and the days of impressions."""

    root: Path
    items: pd.DataFrame
    users: pd.DataFrame
    days: list[str]

    @property
    def images_dir(self) -> Path:
        return self.root / schema.IMAGES_DIR

    def until(self, day: str) -> World:
        """The world as it was on `day`: only days up to and including it (nothing from the future)."""
        if day not in self.days:
            raise DataContractError(f"{self.root}: no impressions for day {day}; days present: {self.days}")
        return World(root=self.root, items=self.items, users=self.users, days=[d for d in self.days if d <= day])

    def impressions(self, days: list[str] | None = None) -> pd.DataFrame:
        """Validated impressions of `days` (default: all), with a `day` column, in day order."""
        frames = [chunk for day in (days if days is not None else self.days) for chunk in self.day_chunks(day)]
        if not frames:
            raise DataContractError(f"{self.root}: no days of impressions selected")
        return pd.concat(frames, ignore_index=True)

    def day_chunks(self, day: str, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
        """One day's impressions, validated, with a `day` column: the whole file at once, or Arrow record
        batches of at most `chunk_rows` rows read one after the other (memory bounded by the chunk).

        A chunk is checked on its own: its rows, their day and references; the key's uniqueness within the
        chunk (data validation checks it over the whole day before a day is accepted).
        """
        path = self._day_path(day)
        try:
            parquet = pq.ParquetFile(path)
            batches = [parquet.read()] if chunk_rows is None else parquet.iter_batches(batch_size=chunk_rows)
            offset = 0
            for batch in batches:
                source = str(path) if chunk_rows is None else f"{path} (record batch from row {offset})"
                df = schema.IMPRESSIONS.validate(batch.to_pandas(), source=source)
                self._check_day(df, day, source)
                self._check_references(df, source)
                offset += len(df)
                yield df.assign(day=day)
        except (pa.ArrowException, OSError) as exc:  # pyarrow raises several types for a corrupt file
            raise DataContractError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc

    def day_rows(self, day: str) -> int:
        """Rows of one day, from the Parquet footer (nothing is decoded)."""
        path = self._day_path(day)
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataContractError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc

    def _day_path(self, day: str) -> Path:
        if day not in self.days:
            raise DataContractError(f"{self.root}: no impressions for day {day}; days present: {self.days}")
        return schema.impressions_path(self.root, day)

    def _check_day(self, df: pd.DataFrame, day: str, path: Path | str) -> None:
        dates = df["ts"].dt.strftime("%Y-%m-%d").to_numpy()
        bad = dates != day
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataContractError(f"{path}: row {row}: ts {df['ts'][row]} is not on the file's day {day}")

    def _check_references(self, df: pd.DataFrame, path: Path | str) -> None:
        for column, table, known in (
            ("item_id", schema.ITEMS_FILE, self.items["item_id"]),
            ("user_id", schema.USERS_FILE, self.users["user_id"]),
        ):
            unknown = ~df[column].isin(known).to_numpy()
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                raise DataContractError(
                    f"{path}: row {row}: {column} {df[column][row]!r} is not in {table} "
                    f"({int(unknown.sum())} row(s) with unknown {column})"
                )


def list_days(root: Path) -> list[str]:
    folder = Path(root) / schema.IMPRESSIONS_DIR
    if not folder.is_dir():
        raise DataContractError(f"{root}: no '{schema.IMPRESSIONS_DIR}/' folder (is this a world folder?)")
    days = sorted(p.stem for p in folder.glob("*.parquet") if not p.name.startswith("."))
    for day in days:
        if not schema.is_day(day):
            raise DataContractError(f"{folder / (day + '.parquet')}: file name is not a YYYY-MM-DD day")
    if not days:
        raise DataContractError(f"{folder}: no impression files (expected YYYY-MM-DD.parquet)")
    return days


def open_world(root: Path) -> World:
    root = Path(root)
    if not root.is_dir():
        raise DataContractError(f"{root}: world folder not found (create one with `cscnn data synth`)")
    items = read_table(root / schema.ITEMS_FILE, schema.ITEMS)
    users = read_table(root / schema.USERS_FILE, schema.USERS)
    return World(root=root, items=items, users=users, days=list_days(root))
