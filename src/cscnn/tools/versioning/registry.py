"""Version each day of data with DVC, in a data registry repository.

The daily loop keeps a *data registry*: a git + DVC repository of its own (DVC's "data registry" pattern),
by default `State.from_env().data_registry`, pushing to the DVC remote `State.dvc_remote`. Raw data lands in
a *landing* world folder, which is never modified. Versioning day D:

1. copies into `<registry>/world/` the day's impressions file and the current catalogue (items.parquet,
   users.parquet, images/; only new or changed image files are copied, images no longer in the catalogue
   are removed). If the landing items.parquet has an `available_from` column (YYYY-MM-DD), only items with
   `available_from <= cutoff` (and their images) are kept, where the cutoff is the latest day in the
   registry (D itself, unless an older day is being back-filled);
2. `dvc add`s world/impressions/D.parquet, world/items.parquet, world/users.parquet and world/images;
3. `dvc push`es the workspace's data to the remote, and only then
4. commits the pointers as `data: day D`.

So the registry's `world/` is a valid world folder holding exactly the days versioned so far, and every
commit in the registry is restorable from the remote: a failed push raises `CSCNNError` and rolls the
registry back to its last commit (pointers *and* workspace data), and the next call simply does the day
again. Versioning a day whose data is unchanged makes no commit and returns the current version.

The remote is a per-machine setting: its URL is written to `.dvc/config.local` on every call (never
committed, so moving the remote never dirties the history), while the committed `.dvc/config` keeps the
remote the registry was created with, so that a clone of the registry knows where its data was pushed.
DVC runs in-process (`dvc.repo.Repo`); git runs as the `git` command, with a local identity (the calls
themselves are in `cscnn.tools.versioning.gitdvc`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cscnn.data import schema
from cscnn.errors import CSCNNError, DataContractError
from cscnn.tools.versioning.gitdvc import (
    REMOTE_NAME,
    _checkout,
    _commit,
    _config,
    _configured_remote,
    _dvc,
    _dvc_init,
    _git,
    _git_show_many,
    _has_commits,
    _locked,
    _pull,
    _set_local_config,
)

log = logging.getLogger(__name__)

WORLD_DIR = "world"
BRANCH = "main"
GIT_NAME = "cscnn daily"
GIT_EMAIL = "cscnn@localhost"
COMMIT_PREFIX = "data: day "
AVAILABLE_FROM = schema.AVAILABLE_FROM

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass
class DataVersion:
    """One state of the data registry: what a run trained on, and how to get it back."""

    day: str  # the day this version was made for (version_day) or whose commit this is (current_version)
    commit: str  # git commit sha in the registry
    files: dict[str, str]  # tracked path (relative to the registry) -> DVC md5 (".dir" md5 for images)
    remote: str  # the DVC remote the data was pushed to
    world_dir: Path  # <registry>/world: the world folder to train on
    days: list[str] = field(default_factory=list)  # the days of impressions in this version

    def tag(self) -> str:
        """Short id recorded on MLflow runs: `restore(registry, remote, version.tag())` brings it back."""
        return f"{self.day}@{self.commit[:10]}"

    def to_dict(self) -> dict:
        return {
            "day": self.day,
            "commit": self.commit,
            "tag": self.tag(),
            "files": dict(self.files),
            "remote": self.remote,
            "world_dir": str(self.world_dir),
            "days": list(self.days),
        }


# ---------------------------------------------------------------------------------------------- public API


def init_registry(registry: Path, remote: str) -> None:
    """Make `registry` a git + DVC repository with `remote` as its default DVC remote. Idempotent.

    The first call commits `registry: init` (the DVC config naming the remote). Later calls with another
    remote only update `.dvc/config.local`, which overrides the committed URL on this machine.
    """
    registry = Path(registry).resolve()
    url = remote_url(remote)
    registry.mkdir(parents=True, exist_ok=True)
    if not (registry / ".git").exists():
        _git(registry, "init", "-q")
        _git(registry, "symbolic-ref", "HEAD", f"refs/heads/{BRANCH}")
    for key, value in (("user.name", GIT_NAME), ("user.email", GIT_EMAIL), ("commit.gpgsign", "false")):
        if _git(registry, "config", "--local", "--get", key, check=False).strip() != value:
            _git(registry, "config", "--local", key, value)
    if not (registry / ".dvc").is_dir():
        _dvc_init(registry)
        with _config(registry).edit("repo") as conf:
            conf["core"]["remote"] = REMOTE_NAME
            conf["remote"][REMOTE_NAME] = {"url": url}
    _set_local_config(registry, url)
    if not _has_commits(registry):
        _git(registry, "add", "--", ".dvc/config", ".dvc/.gitignore", ".dvcignore")
        _commit(registry, "registry: init")


def version_day(landing: Path, day: str, registry: Path, remote: str) -> DataVersion:
    """Copy day `day` (and the current catalogue) from `landing` into the registry, add, push and commit it.

    Raises `DataContractError` when the landing folder lacks the day's impressions or its catalogue, and
    `CSCNNError` (with DVC's message) when the push fails; in both cases the registry is left at its last
    commit. Same data as already versioned: no new commit, the current version is returned.
    """
    _check_day(day)
    landing = Path(landing).resolve()
    registry = Path(registry).resolve()
    source = schema.impressions_path(landing, day)
    if not source.is_file():
        raise DataContractError(f"{source}: impressions file for day {day} not found in the landing folder")
    for name in (schema.ITEMS_FILE, schema.USERS_FILE):
        if not (landing / name).is_file():
            raise DataContractError(f"{landing / name}: catalogue file not found in the landing folder")
    url = remote_url(remote)
    init_registry(registry, url)
    with _locked(registry):
        _sync_to_branch(registry)
        world = registry / WORLD_DIR
        marker = _in_progress_marker(registry)
        marker.write_text(f"{day}\n")  # removed once the day is committed or rolled back; a kill leaves it
        try:
            cutoff = max([*_tracked_days(registry), day])
            _copy_file(source, schema.impressions_path(world, day), registry)
            _copy_catalogue(landing, world, cutoff, registry)
            targets = [
                schema.impressions_path(world, day),
                world / schema.ITEMS_FILE,
                world / schema.USERS_FILE,
                world / schema.IMAGES_DIR,
            ]
            with _dvc(registry) as d:
                d.run("add", lambda: d.repo.add([str(t) for t in targets]))
            _git(registry, "add", "--", *_pointer_files(registry, targets))
            changed = _git(registry, "diff", "--cached", "--quiet", check=False, returncode=True) != 0
            with _dvc(registry) as d:
                d.run(f"push to {url}", lambda: d.repo.push(remote=REMOTE_NAME))
            if changed:
                _commit(registry, f"{COMMIT_PREFIX}{day}\n\nsource: {landing}\nremote: {url}\n")
            else:
                log.info("day %s: data unchanged in %s, no new commit", day, registry)
        except BaseException:
            _rollback(registry)
            marker.unlink(missing_ok=True)
            raise
        marker.unlink(missing_ok=True)
        return _version_at(registry, "HEAD", url, day=day)


def recover(registry: Path) -> bool:
    """Put the registry back at its last commit if a versioning was killed half-way (or anything left it
    dirty): git pointers reset, files of the unfinished day removed, the data checked out to match. A restored
    older commit stays checked out. Returns whether anything was restored; a clean registry is not touched."""
    registry = Path(registry).resolve()
    if not (registry / ".git").exists() or not _has_commits(registry):
        return False
    with _locked(registry):
        marker = _in_progress_marker(registry)
        dirty = _git(registry, "status", "--porcelain", "--untracked-files=all", "--", ".").strip()
        if not marker.exists() and not dirty:
            return False
        what = f"day {marker.read_text().strip()}" if marker.exists() else "uncommitted changes"
        log.warning("%s: unfinished versioning (%s); restoring the last commit", registry, what)
        _git(registry, "reset", "-q", "--hard", "HEAD")
        _git(registry, "clean", "-fdq", "--", WORLD_DIR)
        _checkout(registry)
        marker.unlink(missing_ok=True)
        return True


def current_version(registry: Path) -> DataVersion | None:
    """The registry's latest data commit (the tip of its branch), or None if no day was versioned yet."""
    registry = Path(registry).resolve()
    if not (registry / ".git").exists() or not _has_commits(registry):
        return None
    ref = BRANCH if _git(registry, "rev-parse", "--verify", "-q", BRANCH, check=False).strip() else "HEAD"
    sha = _git(registry, "log", "-1", "--format=%H", f"--grep=^{COMMIT_PREFIX}", ref).strip()
    if not sha:
        return None
    return _version_at(registry, sha, _configured_remote(registry))


def restore(registry: Path, remote: str, commit: str | None = None) -> None:
    """Bring the registry's world back from `remote`: at `commit` (a sha or a `tag()`), else at the latest.

    Restoring an older commit leaves the registry at that commit (detached); the next `version_day` or a
    `restore` without a commit returns it to the latest.
    """
    registry = Path(registry).resolve()
    if not (registry / ".git").exists() or not (registry / ".dvc").is_dir():
        raise CSCNNError(f"{registry}: not a data registry (no .git/.dvc); nothing to restore")
    url = remote_url(remote)
    init_registry(registry, url)
    if commit is not None and "@" in commit:
        commit = commit.rsplit("@", 1)[1]
    with _locked(registry):
        _git(registry, "reset", "-q", "--hard", "HEAD")
        if commit is None:
            _git(registry, "checkout", "-q", BRANCH)
        else:
            sha = _git(registry, "rev-parse", "--verify", "-q", f"{commit}^{{commit}}", check=False).strip()
            if not sha:
                raise CSCNNError(f"{registry}: no commit {commit!r} in the data registry")
            _git(registry, "checkout", "-q", "--detach", sha)
        _git(registry, "clean", "-fdq", "--", WORLD_DIR)
        _pull(registry, url)


def remote_url(remote: str | os.PathLike) -> str:
    """A DVC remote as written to the config: URLs as given, local folders as absolute paths."""
    text = os.fspath(remote)
    if not text:
        raise CSCNNError("the DVC remote is empty (set CSCNN_DVC_REMOTE or pass a folder or URL)")
    return text if _URL.match(text) else str(Path(text).expanduser().resolve())


# ------------------------------------------------------------------------------------------------ copying


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


# ------------------------------------------------------------------------------------------- registry commits


def _pointer_files(registry: Path, targets: list[Path]) -> list[str]:
    """The files `dvc add targets` writes for git: one .dvc per target and the .gitignore beside it."""
    files = {t.with_name(t.name + ".dvc") for t in targets} | {t.parent / ".gitignore" for t in targets}
    return sorted(p.relative_to(registry).as_posix() for p in files if p.exists())


def _sync_to_branch(registry: Path) -> None:
    """Put the registry at its branch tip: git pointers exactly as committed, the data matching them."""
    _git(registry, "reset", "-q", "--hard", "HEAD")
    if not _git(registry, "symbolic-ref", "-q", "HEAD", check=False).strip():
        log.warning("%s: was at an older commit (restored); returning to %s", registry, BRANCH)
        _git(registry, "checkout", "-q", BRANCH)
    _git(registry, "clean", "-fdq", "--", WORLD_DIR)
    _checkout(registry)


def _rollback(registry: Path) -> None:
    """Undo an unfinished day: pointers back to the last commit, new files removed, data checked out."""
    try:
        _git(registry, "reset", "-q", "--hard", "HEAD")
        _git(registry, "clean", "-fdq", "--", WORLD_DIR)
        _checkout(registry)
    except Exception as exc:  # keep the original error; the next call resets again
        log.error("%s: rollback to the last commit incomplete: %s", registry, exc)


def _in_progress_marker(registry: Path) -> Path:
    return registry / ".git" / "cscnn-versioning-in-progress"


def _tracked_days(registry: Path) -> list[str]:
    folder = registry / WORLD_DIR / schema.IMPRESSIONS_DIR
    return sorted(p.name.removesuffix(".parquet.dvc") for p in folder.glob("*.parquet.dvc"))


def _version_at(registry: Path, rev: str, remote: str, day: str | None = None) -> DataVersion:
    sha = _git(registry, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    subject = _git(registry, "log", "-1", "--format=%s", sha).strip()
    listing = _git(registry, "ls-tree", "-r", "--name-only", sha, "--", WORLD_DIR).splitlines()
    pointers = [p for p in listing if p.endswith(".dvc")]
    files: dict[str, str] = {}
    for path, text in zip(pointers, _git_show_many(registry, sha, pointers), strict=True):
        outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
        files[path.removesuffix(".dvc")] = str(outs[0].get("md5", ""))
    prefix = f"{WORLD_DIR}/{schema.IMPRESSIONS_DIR}/"
    days = sorted(p[len(prefix) :].removesuffix(".parquet") for p in files if p.startswith(prefix))
    return DataVersion(
        day=day or subject.removeprefix(COMMIT_PREFIX).strip(),
        commit=sha,
        files=dict(sorted(files.items())),
        remote=remote,
        world_dir=registry / WORLD_DIR,
        days=days,
    )
