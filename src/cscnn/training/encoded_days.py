"""The training days encoded once per training (`train.encode_once`), in the pass that fits the vocabularies.

Without it every epoch reads, validates, joins and encodes every training chunk again (`encoded_chunks`):
on the `bench` world that was three quarters of the data path's time (docs/benchmarks.md). Here the fit pass
does it once: each chunk's sparse tokens get provisional ids in first-seen order (the vocabularies are not
known before the pass ends), and the chunk's arrays go to raw files in a temporary folder, one set per day.
When the pass ends the vocabularies are sorted exactly as `FeatureEncoder.fit_stream` sorts them, and a
chunk read back maps its provisional ids to the vocabularies' 1-based indices: the same arrays as
`encode(feature_frame(chunk), encoder)`, chunk for chunk, with the same chunk boundaries, so the shuffle
buffer draws the same batches as from the Parquet days.

Memory: one chunk at a time (chunks are read back with `np.fromfile`, not mapped, so what an epoch has read
does not stay resident). Disk: about 80 bytes per training impression, removed when the preparation is
garbage collected or the process exits.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.data import schema
from cscnn.data.io import World
from cscnn.training.features import EncodedSplit, FeatureEncoder, feature_frame

# What each day's files hold per row, in EncodedSplit's dtypes; `sparse` holds provisional ids until read back.
_COLUMNS: dict[str, tuple[type, int]] = {
    "sparse": (np.int64, len(schema.SPARSE_FEATURES)),
    "dense": (np.float32, len(schema.DENSE_FEATURES)),
    "item_row": (np.int64, 0),
    "label": (np.float32, 0),
}


class _FirstSeen:
    """Provisional ids of one sparse feature's tokens, in the order they were first seen."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def encode(self, values: pd.Series) -> np.ndarray:
        local, uniques = pd.factorize(values, use_na_sentinel=False)
        ids = self.ids
        known = np.fromiter((ids.setdefault(token, len(ids)) for token in uniques), np.int64, len(uniques))
        return known[local]

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """The sorted vocabulary, and each provisional id's 1-based index in it."""
        vocab = sorted(self.ids)
        index = np.empty(len(vocab), dtype=np.int64)
        index[[self.ids[token] for token in vocab]] = np.arange(1, len(vocab) + 1)
        return vocab, index


@dataclass
class EncodedDays:
    """Encoded training days on local disk: `chunks(day)` yields what `encoded_chunks` would for that day."""

    folder: Path
    encoder: FeatureEncoder
    chunk_sizes: dict[str, list[int]]  # per day, the rows of each chunk as the fit pass read them
    index: np.ndarray  # (vocabulary size of the largest feature, features): provisional id -> 1-based index

    def __post_init__(self) -> None:
        self._categories = np.asarray(self.encoder.categories, dtype=object)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    @property
    def days(self) -> list[str]:
        return list(self.chunk_sizes)

    def chunks(self, day: str) -> Iterator[EncodedSplit]:
        offset = 0
        for rows in self.chunk_sizes[day]:
            arrays = {name: self._read(day, name, offset, rows) for name in _COLUMNS}
            offset += rows
            sparse = np.take_along_axis(self.index, arrays["sparse"], axis=0)
            category = sparse[:, schema.SPARSE_FEATURES.index("category")]
            yield EncodedSplit(
                sparse=sparse,
                dense=arrays["dense"],
                item_row=arrays["item_row"],
                label=arrays["label"],
                category=self._categories[category - 1],  # every training row's category is in the vocabulary
                cold=sparse[:, schema.SPARSE_FEATURES.index("item_id")] == 0,
            )

    def close(self) -> None:
        """Remove the files now (otherwise when this object is collected or the process exits)."""
        self._finalizer()

    def _read(self, day: str, name: str, offset: int, rows: int) -> np.ndarray:
        dtype, width = _COLUMNS[name]
        per_row = max(width, 1)
        values = np.fromfile(
            _path(self.folder, day, name), dtype=dtype, count=rows * per_row, offset=offset * per_row * dtype().itemsize
        )
        return values.reshape(rows, width) if width else values


def _path(folder: Path, day: str, name: str) -> Path:
    return folder / f"{day}.{name}"


def encode_days(world: World, days: list[str], chunk_rows: int) -> tuple[FeatureEncoder, EncodedDays]:
    """Vocabularies of `days` (the same as `stream.fit_encoder`'s) and the days encoded with them, in one
    streaming pass over the Parquet chunks."""
    folder = Path(tempfile.mkdtemp(prefix="cscnn-encoded-days-"))
    try:
        seen = {name: _FirstSeen() for name in schema.SPARSE_FEATURES}
        chunk_sizes: dict[str, list[int]] = {}
        for day in days:
            chunk_sizes[day] = []
            files = {name: _path(folder, day, name).open("wb") for name in _COLUMNS}
            try:
                for chunk in world.day_chunks(day, chunk_rows):
                    frame = feature_frame(world, chunk)
                    _write(files, frame, seen)
                    chunk_sizes[day].append(len(frame))
            finally:
                for file in files.values():
                    file.close()
        vocabs, columns = {}, []
        for name in schema.SPARSE_FEATURES:
            vocabs[name], index = seen[name].vocabulary()
            columns.append(index)
        encoder = FeatureEncoder(vocabs=vocabs, categories=vocabs["category"])
        return encoder, EncodedDays(folder, encoder, chunk_sizes, _stack(columns))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _write(files: dict, frame: pd.DataFrame, seen: dict[str, _FirstSeen]) -> None:
    """Append one feature frame's rows: provisional sparse ids (as `encode_sparse` reads tokens: as strings),
    dense features, catalogue rows and labels."""
    sparse = np.stack([seen[name].encode(frame[name].astype(str)) for name in schema.SPARSE_FEATURES], axis=1)
    arrays = {
        "sparse": sparse,
        "dense": frame[list(schema.DENSE_FEATURES)].to_numpy(dtype=np.float32),
        "item_row": frame["item_row"].to_numpy(dtype=np.int64),
        "label": frame[schema.LABEL].to_numpy(dtype=np.float32),
    }
    for name, (dtype, _width) in _COLUMNS.items():
        files[name].write(np.ascontiguousarray(arrays[name], dtype=dtype).tobytes())


def _stack(columns: list[np.ndarray]) -> np.ndarray:
    """Per-feature index arrays as one (longest, features) array for `np.take_along_axis` (padding unused)."""
    index = np.zeros((max(len(c) for c in columns), len(columns)), dtype=np.int64)
    for j, column in enumerate(columns):
        index[: len(column), j] = column
    return index
