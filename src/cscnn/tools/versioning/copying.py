"""Copying a landing day and the catalogue into the data registry's world folder (only what changed).

Everything is staged in the registry's DVC scratch space and moved into place, so a DVC-linked file is
replaced, never written through into the cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cscnn.data import schema
from cscnn.errors import DataContractError

AVAILABLE_FROM = schema.AVAILABLE_FROM


def _check_day(day: str) -> None:
    if not schema.is_day(day):
        raise DataContractError(f"day {day!r} is not a YYYY-MM-DD date")


def _scratch(registry: Path) -> Path:
    folder = registry / ".dvc" / "tmp" / "cscnn-staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _same_bytes(a: Path, b: Path) -> bool:
    if not b.is_file() or a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


def _place(staged: Path, target: Path, compare: bool = True) -> bool:
    """Move `staged` onto `target` unless it holds the same bytes (an untouched file keeps DVC's hash cache)."""
    if compare and _same_bytes(staged, target):
        staged.unlink()
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)  # replaces a DVC link, never writes through it into the cache
    return True


def _copy_file(source: Path, target: Path, registry: Path) -> bool:
    if _same_bytes(source, target):
        return False
    staged = _scratch(registry) / f"{target.name}.{os.getpid()}"
    shutil.copyfile(source, staged)
    return _place(staged, target, compare=False)


def _copy_catalogue(landing: Path, world: Path, cutoff: str, registry: Path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    _copy_file(landing / schema.USERS_FILE, world / schema.USERS_FILE, registry)
    items_path = landing / schema.ITEMS_FILE
    try:
        columns = pq.read_schema(items_path).names
    except Exception as exc:
        raise DataContractError(f"{items_path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    images: set[str] | None = None
    if AVAILABLE_FROM in columns:
        table = pq.read_table(items_path)
        since = pc.utf8_slice_codeunits(pc.cast(table[AVAILABLE_FROM], pa.string()), 0, 10)
        table = table.filter(pc.fill_null(pc.less_equal(since, cutoff), False))
        staged = _scratch(registry) / f"{schema.ITEMS_FILE}.{os.getpid()}"
        pq.write_table(table, staged)
        _place(staged, world / schema.ITEMS_FILE)
        if "image" not in table.column_names:
            raise DataContractError(f"{items_path}: missing column 'image'")
        images = {str(name) for name in table["image"].to_pylist()}
    else:
        _copy_file(items_path, world / schema.ITEMS_FILE, registry)
    _mirror_images(landing / schema.IMAGES_DIR, world / schema.IMAGES_DIR, images, registry)


def _mirror_images(source: Path, target: Path, names: set[str] | None, registry: Path) -> None:
    """Make `target` hold exactly `names` (default: every file of `source`), copying only what changed."""
    if names is None:
        if not source.is_dir():
            raise DataContractError(f"{source}: images folder not found in the landing folder")
        names = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    root = source.resolve()
    for name in sorted(names):
        path = source / name
        if not path.resolve().is_relative_to(root):
            raise DataContractError(f"{source}: image path {name!r} points outside the images folder")
        if not path.is_file():
            raise DataContractError(f"{path}: image file not found in the landing folder")
        _copy_file(path, target / name, registry)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(target.rglob("*"), reverse=True):  # children before their folders
        if path.is_file() or path.is_symlink():
            if path.relative_to(target).as_posix() not in names:
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
