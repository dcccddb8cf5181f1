"""Versioning each day of data in the DVC data registry: add, push, commit, restore (tiny profile)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cscnn.data import schema
from cscnn.data.io import list_days, open_world
from cscnn.errors import CSCNNError, DataContractError
from cscnn.tools.versioning import current_version, restore, version_day

pytest.importorskip("dvc")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` -> sha256 of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commit_count(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


@pytest.fixture(scope="module")
def landing(tiny_world, tmp_path_factory) -> Path:
    """The session's tiny world as the landing folder (versioning only reads it)."""
    items = pd.read_parquet(tiny_world / schema.ITEMS_FILE)
    if schema.AVAILABLE_FROM in items.columns:
        return tiny_world
    # a generator without it: an item enters on its first showing (on a copy: tiny_world is shared, read-only)
    path = tmp_path_factory.mktemp("landing") / "world"
    shutil.copytree(tiny_world, path)
    days = list_days(path)
    shown = pd.concat(pd.read_parquet(schema.impressions_path(path, d)).assign(day=d) for d in days)
    first = shown.groupby("item_id")["day"].min()
    items[schema.AVAILABLE_FROM] = items["item_id"].map(first).fillna(days[-1])
    items.to_parquet(path / schema.ITEMS_FILE, index=False)
    return path


@pytest.fixture(scope="module")
def landing_digest(landing) -> dict[str, str]:
    return tree_digest(landing)


@pytest.fixture(scope="module")
def days(landing) -> list[str]:
    return list_days(landing)


@pytest.fixture(scope="module")
def versioned(landing, landing_digest, days, tmp_path_factory):
    base = tmp_path_factory.mktemp("registry")
    registry, remote = base / "registry", base / "remote"
    first = version_day(landing, days[0], registry, str(remote))
    second = version_day(landing, days[1], registry, str(remote))
    return registry, str(remote), first, second


def test_two_days_give_a_world_with_exactly_those_days(landing, days, versioned) -> None:
    registry, remote, first, second = versioned
    assert first.world_dir == second.world_dir == registry / "world"
    world = open_world(second.world_dir)
    assert world.days == days[:2] == second.days and first.days == days[:1]
    assert len(world.impressions()) > 0  # every reference resolves against the versioned catalogue
    assert set(second.files) == {
        "world/impressions/" + days[0] + ".parquet",
        "world/impressions/" + days[1] + ".parquet",
        "world/items.parquet",
        "world/users.parquet",
        "world/images",
    }
    assert second.files["world/images"].endswith(".dir")
    assert (
        second.files["world/impressions/" + days[0] + ".parquet"]
        == first.files["world/impressions/" + days[0] + ".parquet"]
    )
    assert second.commit != first.commit and second.tag() == f"{days[1]}@{second.commit[:10]}"
    assert second.remote == remote and second.to_dict()["tag"] == second.tag()
    subjects = git(registry, "log", "--format=%s").splitlines()
    assert subjects == [f"data: day {days[1]}", f"data: day {days[0]}", "registry: init"]
    assert git(registry, "status", "--porcelain") == ""
    latest = current_version(registry)
    assert latest is not None and latest.commit == second.commit and latest.day == days[1]
    assert latest.files == second.files


def test_same_day_again_makes_no_new_commit(landing, days, versioned) -> None:
    registry, remote, _first, second = versioned
    before = commit_count(registry)
    again = version_day(landing, days[1], registry, remote)
    assert again.commit == second.commit and again.files == second.files
    assert version_day(landing, days[0], registry, remote).commit == second.commit  # an older day, unchanged
    assert commit_count(registry) == before


def test_landing_folder_is_never_modified(landing, landing_digest, versioned) -> None:
    assert tree_digest(landing) == landing_digest


def test_round_trip_push_wipe_restore(landing, days, tmp_path) -> None:
    registry, remote = tmp_path / "registry", str(tmp_path / "remote")
    first = version_day(landing, days[0], registry, remote)
    second = version_day(landing, days[1], registry, remote)
    world = registry / "world"
    before = tree_digest(world)
    assert any(name.startswith("images/") for name in before)

    # wipe the workspace data and the DVC cache: only the git pointers are left
    for tracked in second.files:
        path = registry / tracked
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(registry / ".dvc" / "cache")
    assert not any(name.endswith(".parquet") or name.startswith("images/") for name in tree_digest(world))

    restore(registry, remote)
    assert tree_digest(world) == before
    assert git(registry, "status", "--porcelain") == ""

    # an older version by its tag, then the daily loop carries on from the latest
    restore(registry, remote, first.tag())
    assert open_world(world).days == days[:1]
    third = version_day(landing, days[2], registry, remote)
    assert open_world(world).days == days[:3] == third.days
    assert git(registry, "log", "-1", "--format=%s") == f"data: day {days[2]}\n"

    # a clone of the registry (git only) gets its data from the remote
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(registry), str(clone)], check=True)
    restore(clone, remote)
    assert tree_digest(clone / "world") == tree_digest(world)


def test_catalogue_holds_the_items_available_by_the_latest_day(landing, days, versioned) -> None:
    _registry, _remote, first, second = versioned
    items = open_world(landing).items
    on = {day: items[items[schema.AVAILABLE_FROM] <= day] for day in days[:2]}
    assert 0 < len(on[days[0]]) < len(on[days[1]]) < len(items)
    world = open_world(second.world_dir)
    assert sorted(world.items["item_id"]) == sorted(on[days[1]]["item_id"])
    assert {p.name for p in world.images_dir.iterdir()} == set(on[days[1]]["image"])
    assert first.files["world/items.parquet"] != second.files["world/items.parquet"]
    assert first.files["world/images"] != second.files["world/images"]
    assert first.files["world/users.parquet"] == second.files["world/users.parquet"]


def test_without_available_from_the_catalogue_is_copied_whole(landing, days, tmp_path) -> None:
    source = tmp_path / "landing"
    shutil.copytree(landing, source)
    items = pd.read_parquet(landing / schema.ITEMS_FILE).drop(columns=[schema.AVAILABLE_FROM])
    items.to_parquet(source / schema.ITEMS_FILE, index=False)
    version = version_day(source, days[0], tmp_path / "registry", str(tmp_path / "remote"))
    world = version.world_dir
    assert (world / schema.ITEMS_FILE).read_bytes() == (source / schema.ITEMS_FILE).read_bytes()
    assert (world / schema.USERS_FILE).read_bytes() == (source / schema.USERS_FILE).read_bytes()
    assert tree_digest(world / schema.IMAGES_DIR) == tree_digest(source / schema.IMAGES_DIR)
    assert open_world(world).days == days[:1]


def test_missing_day_raises_a_data_contract_error(landing, tmp_path) -> None:
    registry = tmp_path / "registry"
    with pytest.raises(DataContractError, match=r"impressions/2030-01-01\.parquet"):
        version_day(landing, "2030-01-01", registry, str(tmp_path / "remote"))
    with pytest.raises(DataContractError, match="YYYY-MM-DD"):
        version_day(landing, "yesterday", registry, str(tmp_path / "remote"))
    assert not registry.exists()


def test_failed_push_leaves_the_registry_at_its_last_commit(landing, days, tmp_path) -> None:
    registry, remote = tmp_path / "registry", str(tmp_path / "remote")
    first = version_day(landing, days[0], registry, remote)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the remote folder should be")
    with pytest.raises(CSCNNError, match="push") as failure:
        version_day(landing, days[1], registry, str(blocker / "remote"))
    assert "Not a directory" in str(failure.value)
    assert git(registry, "rev-parse", "HEAD").strip() == first.commit
    assert git(registry, "status", "--porcelain") == ""
    assert open_world(registry / "world").days == days[:1]
    # the rerun (remote fixed) completes the day
    second = version_day(landing, days[1], registry, remote)
    assert second.commit != first.commit and open_world(second.world_dir).days == days[:2]


def test_clones_of_a_git_remote_push_in_turn_and_a_reader_checks_out_a_days_commit(
    landing, days, tmp_path, monkeypatch
) -> None:
    """Cluster mode: the registry's history in a git remote, each step in its own clone. A step whose push
    comes after another step's (it versioned from an older tip) is rejected and redone from the new tip (never
    forced), so both days are in the history; a fresh clone restores each day's commit from the remotes."""
    from cscnn.tools.versioning import data_registry as registry_module
    from cscnn.tools.versioning import init_registry

    remote = tmp_path / "registry.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    dvc_remote, url = tmp_path / "dvc-remote", remote.as_uri()
    first = version_day(landing, days[0], tmp_path / "pod-a", dvc_remote, url)
    init_registry(tmp_path / "pod-b", dvc_remote, url)
    real_push, pushes = registry_module._push, []

    def push_after_another_step(registry: Path) -> bool:
        if registry.name == "pod-c" and not pushes:  # pod-b versions and pushes between pod-c's sync and push
            pushes.append(version_day(landing, days[1], tmp_path / "pod-b", dvc_remote, url))
        accepted = real_push(registry)
        pushes.append((registry.name, accepted))
        return accepted

    monkeypatch.setattr(registry_module, "_push", push_after_another_step)
    third = version_day(landing, days[2], tmp_path / "pod-c", dvc_remote, url)
    assert [p for p in pushes if isinstance(p, tuple)] == [("pod-b", True), ("pod-c", False), ("pod-c", True)]
    second = next(p for p in pushes if not isinstance(p, tuple))
    subjects = git(remote, "log", "--format=%s", "main").splitlines()
    assert subjects[:3] == [f"data: day {d}" for d in (days[2], days[1], days[0])]
    assert third.days == days[:3] and second.days == days[:2] and first.days == days[:1]
    monkeypatch.setattr(registry_module, "_push", real_push)
    reader = tmp_path / "pod-reader"
    restore(reader, dvc_remote, second.tag(), git_remote=url)
    assert list_days(reader / "world") == days[:2]  # the commit of day 2, data pulled from the DVC remote
    assert (reader / "world" / schema.impressions_path(Path(), days[1])).read_bytes() == (
        schema.impressions_path(landing, days[1]).read_bytes()
    )
    restore(reader, dvc_remote, None, git_remote=url)
    assert list_days(reader / "world") == days[:3]  # the remote's tip
    from cscnn.tools.versioning import versioned_days

    lister = tmp_path / "pod-validate"
    assert versioned_days(lister, dvc_remote, url) == days[:3]
    assert not list((lister / "world").rglob("*.parquet"))  # the names only: no data pulled


def test_a_registry_made_before_pushes_to_the_remote_and_a_refused_push_raises_with_gits_reason(
    landing, days, tmp_path
) -> None:
    """A registry made without a remote gets `origin` when one is given, and its history is pushed; a push the
    remote refuses for another reason than a race (a hook, access) raises at once, token hidden, and leaves
    nothing unpushed behind."""
    from cscnn.tools.versioning import init_registry
    from cscnn.tools.versioning.data_registry import redact

    remote = tmp_path / "registry.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    dvc_remote = tmp_path / "dvc-remote"
    registry = tmp_path / "made-before"
    version_day(landing, days[0], registry, dvc_remote)  # embedded: no remote
    version_day(landing, days[1], registry, dvc_remote, remote.as_uri())
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == f"data: day {days[1]}"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(CSCNNError, match=r"git push to the data registry's remote failed.*refused by policy"):
        version_day(landing, days[2], registry, dvc_remote, remote.as_uri())
    assert git(registry, "rev-parse", "HEAD") == git(remote, "rev-parse", "main")  # nothing unpushed left
    init_registry(registry, dvc_remote, remote.as_uri())
    assert redact("https://user:s3cret@git.example.com/r.git failed") == "https://***@git.example.com/r.git failed"
