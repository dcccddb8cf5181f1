"""Amazon importer on tiny hand-written fixtures in both the 2018 (JSON) and 2014 (Python literal) formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cscnn.data.amazon import REPORT_FILE, import_amazon
from cscnn.data.images import load_images
from cscnn.data.io import open_world
from cscnn.errors import ConfigError, DataContractError

DAY = 86_400
START = 1_388_534_400  # 2014-01-01 00:00 UTC
ASINS = [f"B{i:03d}" for i in range(12)]
NO_IMAGE = "B011"  # in the metadata, but no image file
NOT_IN_META = "B999"  # reviewed, but absent from the metadata
# (user, asin, day offset, seconds into the day)
REVIEWS = [
    ("U1", "B000", 0, 100),
    ("U1", "B001", 0, 200),
    ("U1", "B002", 1, 300),
    ("U2", "B001", 0, 400),
    ("U2", "B003", 1, 500),
    ("U3", "B004", 1, 600),
    ("U3", "B005", 2, 700),
    ("U3", "B000", 2, 800),
    ("U4", "B006", 2, 900),
    ("U4", "B007", 2, 1000),
    ("U5", "B008", 0, 1100),
    ("U5", "B009", 1, 1200),
    ("U5", "B010", 2, 1300),
    ("U2", NO_IMAGE, 1, 1400),
    ("U4", NOT_IN_META, 0, 1500),
]
CLEAN_REVIEWS = [r for r in REVIEWS if r[1] not in (NO_IMAGE, NOT_IN_META)]


def write_lines(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def write_images(folder: Path, asins: list[str]) -> Path:
    folder.mkdir()
    for i, asin in enumerate(asins):
        image = Image.new("RGB", (12 + i, 10), (20 * i, 100, 200 - 10 * i))
        image.save(folder / (f"{asin}.jpg" if i % 2 else f"{asin}.png"))
    return folder


def meta_2018(asin: str, i: int) -> dict:
    record = {"asin": asin, "title": f"thing {i}", "category": ["Clothing", "Men", f"Leaf{i % 3}"]}
    if i % 4:
        record["brand"] = f"Brand{i % 2}"
    if i % 3:
        record["price"] = f"${i},{i}99.50" if i == 7 else f"${i}.99"
    record["imageURL"] = [f"https://example.com/{asin}.jpg"]
    return record


def meta_2014(asin: str, i: int) -> str:
    record = {"asin": asin, "categories": [["Books", "Fiction", f"Sub{i % 2}"], ["Other"]], "imUrl": "http://x/y.jpg"}
    if i % 3:
        record["price"] = float(i) + 0.5
    return repr(record)  # a Python dict literal, not JSON


@pytest.fixture
def source_2018(tmp_path: Path) -> dict:
    reviews = [
        json.dumps(
            {"reviewerID": u, "asin": a, "overall": 5.0, "unixReviewTime": START + d * DAY + s, "verified": True}
        )
        for u, a, d, s in REVIEWS
    ]
    meta = [json.dumps(meta_2018(asin, i)) for i, asin in enumerate(ASINS)]
    meta.append(json.dumps({"asin": "B000", "title": "a duplicate record"}))
    return {
        "reviews": write_lines(tmp_path / "reviews.json.gz", reviews),
        "meta": write_lines(tmp_path / "meta.json.gz", meta),
        "images_dir": write_images(tmp_path / "images", [a for a in ASINS if a != NO_IMAGE]),
    }


@pytest.fixture
def source_2014(tmp_path: Path) -> dict:
    reviews = [
        repr({"reviewerID": u, "asin": a, "overall": 4.0, "unixReviewTime": START + d * DAY + s})
        for u, a, d, s in CLEAN_REVIEWS
    ]
    return {
        "reviews": write_lines(tmp_path / "reviews_2014.json.gz", reviews),
        "meta": write_lines(tmp_path / "meta_2014.json.gz", [meta_2014(a, i) for i, a in enumerate(ASINS)]),
        "images_dir": write_images(tmp_path / "images", [a for a in ASINS if a != NO_IMAGE]),
    }


def test_2018_reviews_become_clicks_with_sampled_negatives(tmp_path: Path, source_2018: dict) -> None:
    report = import_amazon(**source_2018, out=tmp_path / "world", neg_ratio=4, missing_image="skip")
    world = open_world(tmp_path / "world")
    impressions = world.impressions()  # validates every day's file against the contract and the tables
    assert report == json.loads((tmp_path / "world" / REPORT_FILE).read_text())
    pages = impressions.groupby("request_id")["click"].agg(["sum", "size"])
    assert (pages["sum"] == 1).all() and (pages["size"] <= 5).all()
    # the very first review has no other item on the market yet; later pages fill up
    assert pages["size"].iloc[0] == 1 and (pages["size"].iloc[-6:] == 5).all()
    counts = report["counts"]
    assert counts["positives"] == len(CLEAN_REVIEWS) == impressions["click"].sum()
    assert counts["negatives"] + counts["negatives_short"] == 4 * len(CLEAN_REVIEWS)
    for _, page in impressions.groupby("request_id"):
        assert sorted(page["position"]) == list(range(1, len(page) + 1))
        assert page["ts"].nunique() == 1 and page["user_id"].nunique() == 1
    reviewed = {(u, a) for u, a, _, _ in REVIEWS}
    negatives = impressions[impressions["click"] == 0]
    assert not any((u, a) in reviewed for u, a in zip(negatives["user_id"], negatives["item_id"], strict=True))
    assert set(impressions["device"]) == {"unknown"}
    assert world.days == ["2014-01-01", "2014-01-02", "2014-01-03"]
    assert (world.users[["age_group", "gender"]] == "unknown").all().all()
    items = world.items.set_index("item_id")
    assert items.loc["B001", "category"] == "Leaf1"  # leaf of the path
    assert items.loc["B000", "brand"] == "unknown" and items.loc["B001", "brand"] == "Brand1"
    assert items.loc["B001", "price"] == pytest.approx(1.99)
    assert items.loc["B007", "price"] == pytest.approx(7799.50)  # "$7,799.50"
    assert items.loc["B000", "price"] == 0.0  # no price
    assert report["counts"]["meta_duplicates"] == 1
    images = load_images(world.items, world.images_dir, 16)
    assert images.shape == (len(world.items), 3, 16, 16)


def test_2014_python_literal_lines_and_category_level(tmp_path: Path, source_2014: dict) -> None:
    leaf = import_amazon(**source_2014, out=tmp_path / "leaf", missing_image="skip")
    top = import_amazon(**source_2014, out=tmp_path / "top", category_level=0, missing_image="skip")
    clamped = import_amazon(**source_2014, out=tmp_path / "deep", category_level=9, missing_image="skip")
    assert leaf["counts"]["positives"] == len(CLEAN_REVIEWS)
    leaf_items = open_world(tmp_path / "leaf").items.set_index("item_id")
    assert leaf_items.loc["B001", "category"] == "Sub1"  # leaf of the first path
    assert leaf_items.loc["B001", "price"] == pytest.approx(1.5)
    assert leaf_items.loc["B003", "price"] == 0.0
    assert set(open_world(tmp_path / "top").items["category"]) == {"Books"}
    assert open_world(tmp_path / "deep").items["category"].tolist() == leaf_items["category"].tolist()
    assert top["counts"]["categories"] == 1 and clamped["counts"]["categories"] == 2
    open_world(tmp_path / "leaf").impressions()


def test_negative_sampling_is_deterministic_by_seed(tmp_path: Path, source_2018: dict) -> None:
    def impressions(name: str, seed: int) -> pd.DataFrame:
        import_amazon(**source_2018, out=tmp_path / name, seed=seed, missing_image="skip")
        return open_world(tmp_path / name).impressions()

    first, again, other = impressions("a", 3), impressions("b", 3), impressions("c", 4)
    pd.testing.assert_frame_equal(first, again)
    assert not first[["item_id", "position"]].equals(other[["item_id", "position"]])


def test_missing_image_fails_by_default_and_leaves_nothing(tmp_path: Path, source_2018: dict) -> None:
    out = tmp_path / "out" / "world"
    with pytest.raises(DataContractError, match=r"2 reviewed item\(s\).*B011 \(no image file\).*skip") as caught:
        import_amazon(**source_2018, out=out)
    assert "B999 (not in metadata)" in str(caught.value)
    assert not out.exists()


def test_skip_drops_items_and_their_reviews_and_reports_them(tmp_path: Path, source_2018: dict) -> None:
    (source_2018["images_dir"] / "B010.png").write_bytes(b"not an image")
    report = import_amazon(**source_2018, out=tmp_path / "world", missing_image="skip")
    skipped = {s["asin"]: (s["reason"], s["reviews"]) for s in report["skipped_items"]}
    assert skipped == {
        NO_IMAGE: ("no image file", 1),
        NOT_IN_META: ("not in metadata", 1),
        "B010": ("unreadable image", 1),
    }
    assert report["skipped_by_reason"] == {"no image file": 1, "not in metadata": 1, "unreadable image": 1}
    assert report["counts"]["reviews_dropped"] == 3
    world = open_world(tmp_path / "world")
    assert not set(world.impressions()["item_id"]) & set(skipped)
    assert not set(world.items["item_id"]) & set(skipped)


def test_a_malformed_line_names_the_file_and_line(tmp_path: Path, source_2018: dict) -> None:
    with gzip.open(source_2018["reviews"], "rt") as handle:
        lines = handle.read().splitlines()
    lines[2] = '{"reviewerID": "U1", "asin": '
    write_lines(source_2018["reviews"], lines)
    with pytest.raises(DataContractError, match=r"reviews\.json\.gz: line 3: neither JSON nor a Python dict"):
        import_amazon(**source_2018, out=tmp_path / "world", missing_image="skip")
    assert not (tmp_path / "world").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".world")]


def test_a_missing_field_names_the_line(tmp_path: Path, source_2018: dict) -> None:
    plain = tmp_path / "reviews.json"  # not gzipped: plain files are read too
    plain.write_text(json.dumps({"reviewerID": "U1", "asin": "B000", "unixReviewTime": START}) + "\n\n")
    plain.write_text(plain.read_text() + json.dumps({"reviewerID": "U2", "asin": "B001"}) + "\n")
    with pytest.raises(DataContractError, match=r"reviews\.json: line 3: missing field 'unixReviewTime'"):
        import_amazon(plain, source_2018["meta"], source_2018["images_dir"], tmp_path / "world")


def test_users_who_reviewed_almost_everything_get_fewer_negatives(tmp_path: Path, source_2018: dict) -> None:
    report = import_amazon(**source_2018, out=tmp_path / "world", neg_ratio=9, missing_image="skip")
    pages = open_world(tmp_path / "world").impressions().groupby("request_id")
    sizes = pages.size()
    counts = report["counts"]
    assert counts["negatives_short"] > 0
    assert counts["negatives"] + counts["negatives_short"] == 9 * counts["positives"]
    assert counts["negatives"] == (sizes - 1).sum() and sizes.max() <= 10
    for _, page in pages:
        assert sorted(page["position"]) == list(range(1, len(page) + 1))
        assert page["item_id"].is_unique


@pytest.mark.parametrize(("options", "message"), [({"neg_ratio": 0}, "neg_ratio"), ({"missing_image": "x"}, "fail")])
def test_bad_options_are_config_errors(tmp_path: Path, source_2018: dict, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        import_amazon(**source_2018, out=tmp_path / "world", **options)


def test_the_importer_never_samples_a_reviewed_item_on_a_bigger_catalogue() -> None:
    from cscnn.data.amazon import sample_negatives

    rng = np.random.default_rng(0)
    user = rng.integers(0, 200, 5000)
    item = rng.integers(0, 300, 5000)
    available = np.maximum(item + 1, rng.integers(50, 301, 5000))  # a review's own item is on the market
    negatives = sample_negatives(user, item, available, 4, rng)
    reviewed = set(zip(user.tolist(), item.tolist(), strict=True))
    assert (negatives >= 0).all()
    assert (negatives < available[:, None]).all(), "a negative must already be on the market"
    assert not any((u, n) in reviewed for u, row in zip(user.tolist(), negatives.tolist(), strict=True) for n in row)
    assert all(len(set(row)) == 4 for row in negatives.tolist())


def test_existing_output_is_replaced_only_with_force(source_2018, tmp_path) -> None:
    out = tmp_path / "world"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty; pass force=True"):
        import_amazon(**source_2018, out=out, missing_image="skip")
    assert (out / "precious.txt").read_text() == "keep me"
    import_amazon(**source_2018, out=out, missing_image="skip", force=True)
    assert not (out / "precious.txt").exists()


def test_cli_imports_and_refuses_to_overwrite(source_2018, tmp_path) -> None:
    from typer.testing import CliRunner

    from cscnn.entrypoints.cli import app

    args = ["data", "import-amazon", "--reviews", str(source_2018["reviews"]), "--meta", str(source_2018["meta"])]
    args += ["--images", str(source_2018["images_dir"]), "--out", str(tmp_path / "w"), "--missing-image", "skip"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["counts"]["positives"] > 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "pass force=True (CLI: --force)" in again.output
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0


def test_no_item_is_shown_before_its_first_review(source_2018, tmp_path) -> None:
    import_amazon(**source_2018, out=tmp_path / "world", missing_image="skip")
    world = open_world(tmp_path / "world")
    log = world.impressions()
    first_review = log[log["click"] == 1].groupby("item_id")["ts"].min()
    assert (log["ts"].to_numpy() >= first_review.reindex(log["item_id"]).to_numpy()).all()
