"""Atomic writes (standard library only): a reader never sees a half-written file or folder.

Every status file, table, checkpoint and report in the project is written through these.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cscnn.errors import CSCNNError


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder next to `target`; it replaces `target` only if the block succeeds.

    A failure (bad input, Ctrl-C, a failed swap) leaves `target` as it was: nothing half-written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)) / target.name
            target.rename(old)
            try:
                tmp.rename(target)
            except BaseException:
                old.rename(target)
                raise
            shutil.rmtree(old.parent)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a scratch file name next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy scalars, without importing numpy
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_NAME_LENGTH = 200


class UnsafeNameError(CSCNNError):
    """A name from outside (a registry tag) that is not a plain relative path: as a path it could leave its folder."""


def flat_name(relative: str) -> str:
    """A plain relative path of names as one folder name, its parts joined by '_' ("embeddings/2026-01-08" ->
    "embeddings_2026-01-08"). Only parts of letters, digits, '.', '_' and '-' that start with a letter or digit
    are accepted (no '..', no leading '/', no backslash, no empty part), 200 characters at most; anything else
    raises `UnsafeNameError`. For names that become paths: the registry's table tag is a cache folder and an
    artifact path."""
    parts = relative.split("/")
    if not relative or len(relative) > MAX_NAME_LENGTH or not all(_NAME_PART.fullmatch(part) for part in parts):
        raise UnsafeNameError(f"refusing the name {relative[:80]!r}: not a plain relative path of names")
    return "_".join(parts)
