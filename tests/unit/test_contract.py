"""Bad input gets a clear error naming the file, column and row; nothing is half-written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cscnn.data import schema
from cscnn.data.images import load_images
from cscnn.data.io import open_world, read_table, write_table
from cscnn.errors import DataContractError, ImageError
from cscnn.files import atomic_dir


def impressions(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(["2026-01-01 10:00"] * n, utc=True),
            "request_id": [f"r{i // 2}" for i in range(n)],
            "user_id": ["u1"] * n,
            "item_id": [f"i{i % 2}" for i in range(n)],
            "position": np.arange(1, n + 1),
            "device": ["mobile"] * n,
            "click": np.array([0, 1] * (n // 2), dtype=np.int8),
        }
    )


def items() -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": ["i0", "i1"], "category": ["c0", "c1"], "image": ["i0.png", "i1.png"], "brand": ["b", "b"]}
    ).assign(price=[1.0, 2.0])


def users() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u1"], "age_group": ["25-34"], "gender": ["f"]})


def write_world(root, imp: pd.DataFrame | None = None) -> None:
    write_table(items(), root / schema.ITEMS_FILE, schema.ITEMS)
    write_table(users(), root / schema.USERS_FILE, schema.USERS)
    (root / schema.IMAGES_DIR).mkdir(parents=True)
    for name in ("i0.png", "i1.png"):
        Image.new("RGB", (20, 20), (200, 10, 10)).save(root / schema.IMAGES_DIR / name)
    path = schema.impressions_path(root, "2026-01-01")
    path.parent.mkdir(parents=True)
    (imp if imp is not None else impressions()).to_parquet(path, index=False)


def test_valid_frame_passes() -> None:
    out = schema.IMPRESSIONS.validate(impressions(), "mem")
    assert list(out.columns) == schema.IMPRESSIONS.names
    assert out["click"].dtype == np.int64


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["click"]), r"missing column\(s\) \['click'\]"),
        (lambda df: df.assign(click=df["click"].astype(float)), "column 'click': dtype float64, expected an integer"),
        (lambda df: df.assign(click=[0, 1, 2, 0]), r"column 'click': row 2: value 2 not in allowed set \[0, 1\]"),
        (lambda df: df.assign(user_id=[1, 2, 3, 4]), "column 'user_id': row 0: expected a string"),
        (lambda df: df.assign(position=[1, 0, 3, 4]), "column 'position': row 1: value 0 is below the minimum"),
        (lambda df: df.assign(device=["a", None, "b", "c"]), "column 'device': row 1: missing value"),
        (lambda df: df.assign(item_id=["i0", "i0", "i0", "i1"]), r"row 1: duplicate key"),
        (lambda df: df.assign(ts=["x"] * 4), "column 'ts': dtype .*, expected a timestamp"),
    ],
)
def test_bad_impressions_are_named(mutate, message: str) -> None:
    with pytest.raises(DataContractError, match=message):
        schema.IMPRESSIONS.validate(mutate(impressions()), "day.parquet")


def test_non_finite_price_is_named() -> None:
    bad = items().assign(price=[1.0, np.inf])
    with pytest.raises(DataContractError, match="column 'price': row 1: non-finite"):
        schema.ITEMS.validate(bad, "items.parquet")


def test_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(DataContractError, match="file not found"):
        read_table(tmp_path / "nope.parquet", schema.ITEMS)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataContractError, match=r"junk.parquet: cannot read as Parquet"):
        read_table(tmp_path / "junk.parquet", schema.ITEMS)


def test_world_checks_references_and_day(tmp_path) -> None:
    write_world(tmp_path / "w", impressions().assign(item_id=["i0", "i1", "i9", "i1"], request_id=list("abcd")))
    world = open_world(tmp_path / "w")
    with pytest.raises(DataContractError, match=r"2026-01-01.parquet: row 2: item_id 'i9' is not in items.parquet"):
        world.impressions()
    write_world(tmp_path / "v", impressions().assign(ts=pd.to_datetime(["2026-01-02"] * 4, utc=True)))
    with pytest.raises(DataContractError, match=r"row 0: ts .* is not on the file's day 2026-01-01"):
        open_world(tmp_path / "v").impressions()


def test_bad_images_name_file_and_row(tmp_path) -> None:
    write_world(tmp_path / "w")
    world = open_world(tmp_path / "w")
    assert load_images(world.items, world.images_dir, 16).shape == (2, 3, 16, 16)
    (world.images_dir / "i1.png").write_bytes(b"garbage")
    with pytest.raises(ImageError, match=r"i1.png: cannot decode image .*item 'i1', items.parquet row 1"):
        load_images(world.items, world.images_dir, 16)
    (world.images_dir / "i0.png").unlink()
    with pytest.raises(ImageError, match=r"i0.png: image file not found .*row 0"):
        load_images(world.items, world.images_dir, 16)


def test_write_table_refuses_bad_frames_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(DataContractError):
        write_table(items().assign(price=[-1.0, 1.0]), tmp_path / "items.parquet", schema.ITEMS)
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_old_content_on_failure(tmp_path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_contract_doc_is_generated_from_the_code() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "data_contract.md").read_text()
    assert schema.contract_markdown().strip() in doc, "regenerate the tables with `cscnn data contract`"


@pytest.mark.parametrize("name", ["today", "20260101", "2026-1-1"])
def test_day_files_must_be_named_by_iso_date(tmp_path, name: str) -> None:
    write_world(tmp_path / "w")
    (tmp_path / "w" / schema.IMPRESSIONS_DIR / f"{name}.parquet").write_bytes(b"")
    with pytest.raises(DataContractError, match=f"{name}.parquet: file name is not a YYYY-MM-DD day"):
        open_world(tmp_path / "w")
