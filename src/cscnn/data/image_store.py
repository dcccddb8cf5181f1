"""Each catalogue version's images decoded once, into a memory-mapped uint8 store shared by every process.

Decoding a PNG costs far more than reading its pixels back: on 2 CPU cores the streamed training loop spent
most of a bench epoch decoding cache misses, in every rank, every epoch and again in the embedding refresh.
A store is one `.npy` file, uint8 [n_items, 3, size, size] in `items.parquet` row order, named by a hash of
the image files' contents and the decoded size (content-addressed): any process that opens the same
catalogue at the same size finds the same file, whatever folder the world was copied to. The first one
builds it (under an exclusive lock, so ranks on one node decode once between them); the others wait and
map it. Memory stays bounded: the store is mapped, not loaded, and pages are read as rows are gathered.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.data.images import load_image
from cscnn.errors import CSCNNError, ImageError

STORE_FORMAT = 1  # bump when the decoding changes (resampling, layout): old stores stop matching
BUILD_BLOCK = 512  # images decoded per block while a store is built (memory: one block of pixels)


def default_dir() -> Path:
    """Node-local and shared by every process of one user on the node: ranks, epochs and the refresh."""
    return Path(tempfile.gettempdir()) / f"cscnn-image-store-{os.getuid()}"


def store_key(files: list[Path], size: int) -> str:
    """A hash of every image file's bytes in catalogue order, the decoded size and the store format.

    Reading the files is cheap next to decoding them (the bench catalogue: milliseconds against seconds).
    A missing file hashes as missing, so the error comes from the build, naming the file and its row.
    """
    digest = hashlib.blake2b(f"cscnn-image-store/{STORE_FORMAT}/{size}/{len(files)}".encode(), digest_size=16)
    for path in files:
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def open_store(items: pd.DataFrame, images_dir: Path, size: int, store_dir: Path, keep: int = 4) -> np.ndarray:
    """The catalogue's images as a read-only memory map, uint8 [len(items), 3, size, size]; built if needed.

    `keep`: the stores kept in `store_dir` (the most recently used); older catalogue versions are removed
    after a build. A bad image raises ImageError naming the file, the item and its `items.parquet` row.
    """
    files = [Path(images_dir) / name for name in items["image"]]
    store_dir = Path(store_dir)
    key = store_key(files, size)
    path = store_dir / f"{key}.npy"
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(store_dir / f"{key}.lock"):
            if not path.is_file():
                _build(path, files, items["item_id"].to_numpy(), size)
                _prune(store_dir, keep, current=path)
            os.utime(path)  # "recently used", for the pruning
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError as exc:
        raise CSCNNError(
            f"{store_dir}: cannot write or read the decoded image store ({exc}); point train.image_store_dir at a "
            "writable folder with room for the catalogue (n_items x 3 x size x size bytes), or set "
            "train.decode_once=false"
        ) from exc


def _build(path: Path, files: list[Path], item_ids: np.ndarray, size: int) -> None:
    """Decode every image into a temporary file in blocks, in parallel (PIL releases the GIL while it
    inflates), then rename it into place: a reader never maps a half-written store."""
    partial = path.with_suffix(".partial")
    pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for start in range(0, len(files), BUILD_BLOCK):
                rows = range(start, min(start + BUILD_BLOCK, len(files)))
                for row, image in zip(rows, pool.map(lambda r: _decode(files, item_ids, r, size), rows), strict=True):
                    pixels[row] = image
        pixels.flush()
        del pixels
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _decode(files: list[Path], item_ids: np.ndarray, row: int, size: int) -> np.ndarray:
    try:
        return load_image(files[row], size)
    except ImageError as exc:
        raise ImageError(f"{exc} (item {item_ids[row]!r}, items.parquet row {row})") from exc


def _prune(store_dir: Path, keep: int, current: Path) -> None:
    """Remove all but the `keep` most recently used stores; a process that still maps one keeps its pages."""
    stores = sorted(store_dir.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in stores if p != current][max(0, keep - 1) :]:
        old.unlink(missing_ok=True)
        old.with_suffix(".lock").unlink(missing_ok=True)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """An exclusive flock: one builder per store on a node; the kernel drops it if the holder dies."""
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
