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

On a cluster the registry's git history lives in a git remote (`git_remote`, from
`CSCNN_DATA_REGISTRY_REMOTE`): every step works in a clone of its own, versioning starts from the remote's tip
and ends with a push of the new commit, and a push that the remote rejects (another run versioned a day in
between) is retried from the new tip. Readers check out the commit a day was versioned at (`restore`) and pull
its data from the DVC remote. So no step needs another step's folder.

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
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cscnn.data import schema
from cscnn.errors import CSCNNError, DataContractError
from cscnn.tools.versioning.copying import _check_day, _copy_catalogue, _copy_file
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

PUSH_ATTEMPTS = 3
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


def init_registry(registry: Path, remote: str, git_remote: str | None = None) -> None:
    """Make `registry` a git + DVC repository with `remote` as its default DVC remote. Idempotent.

    The first call commits `registry: init` (the DVC config naming the remote). Later calls with another
    remote only update `.dvc/config.local`, which overrides the committed URL on this machine. With
    `git_remote`, a missing registry is cloned from it (and a new one's first commit is pushed to it).
    """
    registry = Path(registry).resolve()
    url = remote_url(remote)
    if git_remote and not (registry / ".git").exists():
        registry.parent.mkdir(parents=True, exist_ok=True)
        _git(registry.parent, "clone", "-q", git_remote, str(registry))
    registry.mkdir(parents=True, exist_ok=True)
    if not (registry / ".git").exists():
        _git(registry, "init", "-q")
    if git_remote and _git(registry, "remote", "get-url", "origin", check=False).strip() != git_remote:
        verb = "set-url" if _has_origin(registry) else "add"  # a registry made before, or for another remote
        _git(registry, "remote", verb, "origin", git_remote)
    if not _has_commits(registry):
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
        if git_remote and not _push(registry):  # another process created the registry first: take its history
            _follow_remote(registry)


def version_day(landing: Path, day: str, registry: Path, remote: str, git_remote: str | None = None) -> DataVersion:
    """Copy day `day` (and the current catalogue) from `landing` into the registry, add, push and commit it.

    Raises `DataContractError` when the landing folder lacks the day's impressions or its catalogue, and
    `CSCNNError` (with DVC's message) when the push fails; in both cases the registry is left at its last
    commit. Same data as already versioned: no new commit, the current version is returned. With
    `git_remote` the commit is pushed there; a rejected push is redone from the remote's new tip.
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
    init_registry(registry, url, git_remote)
    with _locked(registry):
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            _version_once(landing, day, source, registry, url)
            if not git_remote or _push(registry):  # up to date with the remote (pushed, or nothing to push)
                break
            log.warning("day %s: the registry's remote moved while versioning (attempt %d); redoing", day, attempt)
        else:
            _follow_remote(registry)  # the local branch back at the remote's tip: nothing unpushed stays
            _rollback(registry)
            raise CSCNNError(
                f"day {day}: the data registry's remote {redact(git_remote)} kept moving ({PUSH_ATTEMPTS} "
                "attempts); another run versions days at the same time: run the day again"
            )
        return _version_at(registry, "HEAD", url, day=day)


def _version_once(landing: Path, day: str, source: Path, registry: Path, url: str) -> bool:
    """One attempt: sync to the branch tip, copy, add, push data, commit. True: nothing new was committed."""
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
    return not changed


def versioned_days(registry: Path, remote: str, git_remote: str) -> list[str]:
    """The days versioned at the git remote's tip, read from the pointer files of a clone (no data pulled)."""
    registry = Path(registry).resolve()
    init_registry(registry, remote, git_remote)
    _follow_remote(registry)
    return _tracked_days(registry)


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


def restore(registry: Path, remote: str, commit: str | None = None, git_remote: str | None = None) -> None:
    """Bring the registry's world back from `remote`: at `commit` (a sha or a `tag()`), else at the latest.

    Restoring an older commit leaves the registry at that commit (detached); the next `version_day` or a
    `restore` without a commit returns it to the latest. With `git_remote`, a missing registry is cloned first
    and the latest is the remote's.
    """
    registry = Path(registry).resolve()
    url = remote_url(remote)
    if git_remote:
        init_registry(registry, url, git_remote)  # clones it when missing
    if not (registry / ".git").exists() or not (registry / ".dvc").is_dir():
        raise CSCNNError(f"{registry}: not a data registry (no .git/.dvc); nothing to restore")
    if not git_remote:
        init_registry(registry, url)  # this machine's remote URL in .dvc/config.local
    if commit is not None and "@" in commit:
        commit = commit.rsplit("@", 1)[1]
    with _locked(registry):
        _git(registry, "reset", "-q", "--hard", "HEAD")
        if commit is None and _has_origin(registry):
            _follow_remote(registry)
        elif commit is None:
            _git(registry, "checkout", "-q", BRANCH)
        else:
            if _has_origin(registry):
                _git(registry, "fetch", "-q", "origin")
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


# ------------------------------------------------------------------------------------------- registry commits


def _pointer_files(registry: Path, targets: list[Path]) -> list[str]:
    """The files `dvc add targets` writes for git: one .dvc per target and the .gitignore beside it."""
    files = {t.with_name(t.name + ".dvc") for t in targets} | {t.parent / ".gitignore" for t in targets}
    return sorted(p.relative_to(registry).as_posix() for p in files if p.exists())


def _has_origin(registry: Path) -> bool:
    return _git(registry, "remote", "get-url", "origin", check=False, returncode=True) == 0


def _push(registry: Path) -> bool:
    """Push the branch to `origin` (a no-op when it is up to date); False when the remote rejects it because it
    moved (someone else pushed first). Any other failure (access, network, a hook) raises with git's reason."""
    proc = _git(registry, "push", "--porcelain", "origin", f"{BRANCH}:{BRANCH}", check=False, full=True)
    if proc.returncode == 0:
        return True
    text = f"{proc.stdout}\n{proc.stderr}"
    if re.search(r"\[rejected\].*(fetch first|non-fast-forward)|\bnon-fast-forward\b", text):
        return False
    _follow_remote(registry)  # nothing unpushed stays behind: the registry is at the remote's last commit
    _rollback(registry)
    reason = " ".join(redact(text).split())[-500:]  # one line, no token
    raise CSCNNError(f"{registry}: git push to the data registry's remote failed: {reason}")


def redact(text: str) -> str:
    """`text` with the user-info of any URL in it hidden (a remote's URL may carry a token)."""
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", str(text))


def _follow_remote(registry: Path) -> None:
    """The local branch at the remote's tip (fetched now); local commits not on the remote are dropped. An
    empty remote (nothing pushed yet) leaves the branch as it is."""
    _git(registry, "fetch", "-q", "origin")
    if _git(registry, "rev-parse", "--verify", "-q", f"origin/{BRANCH}", check=False).strip():
        _git(registry, "reset", "-q", "--hard", "HEAD")
        _git(registry, "checkout", "-q", "-B", BRANCH, f"origin/{BRANCH}")


def _sync_to_branch(registry: Path) -> None:
    """Put the registry at its branch tip (the remote's, with one): git pointers exactly as committed, the data
    matching them."""
    _git(registry, "reset", "-q", "--hard", "HEAD")
    if _has_origin(registry):
        _follow_remote(registry)
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
