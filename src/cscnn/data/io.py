"""Read and write contract tables. Reads validate; writes validate first and then land atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
        frames = []
        for day in days if days is not None else self.days:
            if day not in self.days:
                raise DataContractError(f"{self.root}: no impressions for day {day}; days present: {self.days}")
            path = schema.impressions_path(self.root, day)
            df = read_table(path, schema.IMPRESSIONS)
            self._check_day(df, day, path)
            self._check_references(df, path)
            frames.append(df.assign(day=day))
        if not frames:
            raise DataContractError(f"{self.root}: no days of impressions selected")
        return pd.concat(frames, ignore_index=True)

    def _check_day(self, df: pd.DataFrame, day: str, path: Path) -> None:
        dates = df["ts"].dt.strftime("%Y-%m-%d").to_numpy()
        bad = dates != day
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataContractError(f"{path}: row {row}: ts {df['ts'][row]} is not on the file's day {day}")

    def _check_references(self, df: pd.DataFrame, path: Path) -> None:
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
