"""The low-level git and DVC calls of the data registry.

git runs as the `git` command (with the caller's git location variables removed, so a registry inside another
checkout is its own repository); DVC runs in-process (`dvc.repo.Repo`), and any DVC failure becomes a
`CSCNNError` carrying DVC's message and the warnings it logged. `_locked` serialises work on one registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cscnn.errors import CSCNNError

log = logging.getLogger(__name__)

REMOTE_NAME = "storage"

_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------- git


def _git(registry: Path, *args: str, check: bool = True, returncode: bool = False, full: bool = False) -> Any:
    """`git ARGS` in `registry`: its stdout (or its exit code, or with `full` the whole CompletedProcess)."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        proc = subprocess.run(["git", *args], cwd=registry, env=env, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise CSCNNError("data versioning needs the `git` command, which is not installed") from exc
    if check and proc.returncode != 0:
        detail = re.sub(r"(://)[^/@\s]+@", r"\1***@", (proc.stderr or proc.stdout).strip())  # no token in logs
        what = " ".join(a for a in args[:2] if "://" not in a)
        raise CSCNNError(f"{registry}: git {what} failed (exit {proc.returncode}): {detail}")
    if full:
        return proc
    return proc.returncode if returncode else proc.stdout


def _has_commits(registry: Path) -> bool:
    return bool(_git(registry, "rev-parse", "--verify", "-q", "HEAD", check=False).strip())


def _commit(registry: Path, message: str) -> None:
    _git(registry, "commit", "-q", "--no-verify", "-m", message)


def _git_show_many(registry: Path, sha: str, paths: list[str]) -> list[str]:
    """The contents of `paths` at `sha`, read by one `git cat-file --batch`."""
    if not paths:
        return []
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    request = "".join(f"{sha}:{p}\n" for p in paths).encode()
    proc = subprocess.run(["git", "cat-file", "--batch"], cwd=registry, env=env, input=request, capture_output=True)
    if proc.returncode != 0:
        raise CSCNNError(f"{registry}: git cat-file failed: {proc.stderr.decode(errors='replace').strip()}")
    out, pos, texts = proc.stdout, 0, []
    for path in paths:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3:
            raise CSCNNError(f"{registry}: cannot read {path} at {sha[:10]}: {out[pos:end].decode()}")
        size = int(header[2])
        texts.append(out[end + 1 : end + 1 + size].decode())
        pos = end + 1 + size + 1
    return texts


@contextlib.contextmanager
def _locked(registry: Path) -> Iterator[None]:
    """One versioning or restore at a time per registry (e.g. back-filled days run in parallel)."""
    with open(registry / ".git" / "cscnn-versioning.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------------- dvc


def _dvc_repo_class() -> Any:
    try:
        from dvc.repo import Repo
    except ImportError as exc:
        raise CSCNNError("data versioning needs DVC: pip install 'cscnn-ctr[pipeline]'") from exc
    return Repo


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


class _Dvc:
    """An open DVC repository plus `run`, which turns any DVC failure into a `CSCNNError`."""

    def __init__(self, registry: Path, repo: Any, collector: _Collect) -> None:
        self.registry, self.repo, self._collector = registry, repo, collector

    def run(self, what: str, fn: Callable[[], T]) -> T:
        return _call(self.registry, what, fn, self._collector)


@contextlib.contextmanager
def _dvc(registry: Path) -> Iterator[_Dvc]:
    """The registry's DVC repository, quiet about `git add` hints; DVC's logged warnings are collected."""
    repo_cls = _dvc_repo_class()
    collector = _Collect()
    dvc_logger = logging.getLogger("dvc")
    dvc_logger.addHandler(collector)
    try:
        repo = _call(registry, "open", lambda: repo_cls(str(registry)), collector)
        try:
            repo.scm_context.quiet = True
            yield _Dvc(registry, repo, collector)
        finally:
            repo.close()
    finally:
        dvc_logger.removeHandler(collector)


def _call(registry: Path, what: str, fn: Callable[[], T], collector: _Collect | None = None) -> T:
    """Run a DVC call; a failure becomes a `CSCNNError` with DVC's message and the errors it logged."""
    start = len(collector.messages) if collector else 0
    try:
        return fn()
    except CSCNNError:
        raise
    except Exception as exc:
        logged = [m for m in (collector.messages[start:] if collector else []) if m and m not in str(exc)]
        detail = "; ".join([f"{type(exc).__name__}: {exc}", *logged])
        raise CSCNNError(f"{registry}: dvc {what} failed: {detail}") from exc


def _dvc_init(registry: Path) -> None:
    repo_cls = _dvc_repo_class()
    init_logger = logging.getLogger("dvc.repo.init")
    level = init_logger.level
    init_logger.setLevel(logging.WARNING)  # not "You can now commit the changes to git."
    try:
        repo = _call(registry, "init", lambda: repo_cls.init(str(registry)))
    finally:
        init_logger.setLevel(level)
    litter = Path(repo.site_cache_dir)  # created under /var/tmp before our config can move it
    repo.close()
    shutil.rmtree(litter, ignore_errors=True)


def _config(registry: Path) -> Any:
    """The registry's DVC config, without opening the repository (which would create its site cache)."""
    from dvc.config import Config

    dvc_dir = str(registry / ".dvc")
    return _call(registry, "config", lambda: Config(dvc_dir=dvc_dir, local_dvc_dir=dvc_dir))


def _set_local_config(registry: Path, url: str) -> None:
    """This machine's remote URL and DVC scratch space, in the uncommitted `.dvc/config.local`."""
    site_cache = str(registry / ".dvc" / "tmp" / "site-cache")
    config = _config(registry)
    local = config.read("local")
    if local.get("remote", {}).get(REMOTE_NAME, {}).get("url") == url and (
        local.get("core", {}).get("site_cache_dir") == site_cache
    ):
        return
    with config.edit("local") as conf:
        conf["core"]["site_cache_dir"] = site_cache
        conf["remote"][REMOTE_NAME] = {"url": url}


def _configured_remote(registry: Path) -> str:
    return str(_config(registry).get("remote", {}).get(REMOTE_NAME, {}).get("url", ""))


def _checkout(registry: Path) -> None:
    """Make the workspace data match the pointers, from the cache, else from the remote."""
    with _dvc(registry) as d:
        try:
            d.repo.checkout(force=True)
            return
        except Exception as exc:
            log.info("%s: checkout from the cache incomplete (%s); pulling from the remote", registry, exc)
    _pull(registry, _configured_remote(registry))


def _pull(registry: Path, url: str) -> None:
    with _dvc(registry) as d:
        d.run(f"pull from {url}", lambda: d.repo.pull(remote=REMOTE_NAME, force=True))
