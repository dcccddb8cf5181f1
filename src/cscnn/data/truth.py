"""What a generated world knows about its items and a model has to find: their true visual attributes.

Every world this project generates (`cscnn data synth`, `cscnn data photo-amazon --import-to`) writes
`truth/attributes.parquet`: one row per catalogue item, `item_id`, `visual` (the item's true visual term in the
click model, in its own category) and one float column per latent visual attribute (docs/synthetic_world.md,
docs/photo_world.md). Models never read it in training, except the diagnostic `attributes` variant, which
feeds these attributes to the CTR network in place of the image: the ceiling of what the CTR network can make
of perfect visual extraction. Real data has no such file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cscnn.errors import DataContractError
from cscnn.files import atomic_file

ATTRIBUTES_FILE = "truth/attributes.parquet"
ID_COLUMN, VISUAL_COLUMN = "item_id", "visual"


@dataclass(frozen=True)
class TrueAttributes:
    """The attributes of a catalogue, in the catalogue's row order, each column standardised over the catalogue
    (mean 0, standard deviation 1; a constant column stays 0), and each item's true visual term."""

    names: tuple[str, ...]
    values: np.ndarray  # float32 [n_items, n_attributes]
    visual: np.ndarray  # float64 [n_items]


def write_attributes(world: Path, item_ids: np.ndarray, attributes: pd.DataFrame, visual: np.ndarray) -> None:
    """Write `<world>/truth/attributes.parquet` (atomically): `attributes` holds one column per attribute."""
    frame = pd.DataFrame({ID_COLUMN: np.asarray(item_ids, dtype=object), VISUAL_COLUMN: np.asarray(visual, float)})
    for name in attributes.columns:
        frame[str(name)] = attributes[name].to_numpy(dtype=np.float64)
    with atomic_file(Path(world) / ATTRIBUTES_FILE) as tmp:
        frame.to_parquet(tmp, index=False)


def read_attributes(world: Path, item_ids: pd.Series | np.ndarray) -> TrueAttributes:
    """The true attributes of `item_ids` (a catalogue's ids, in its row order). Raises DataContractError naming
    the file when the world has none (real data) or when it lacks one of the items."""
    path = Path(world) / ATTRIBUTES_FILE
    if not path.is_file():
        raise DataContractError(
            f"{path}: not found. Only generated worlds know their items' true visual attributes "
            "(cscnn data synth, cscnn data photo-amazon --import-to); the `attributes` variant needs them"
        )
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DataContractError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    names = tuple(c for c in frame.columns if c not in (ID_COLUMN, VISUAL_COLUMN))
    if ID_COLUMN not in frame or VISUAL_COLUMN not in frame or not names:
        raise DataContractError(f"{path}: expected columns {ID_COLUMN}, {VISUAL_COLUMN} and one per attribute")
    rows = pd.Index(frame[ID_COLUMN].astype(str)).get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
    if (rows < 0).any():
        missing = np.asarray(item_ids)[rows < 0]
        raise DataContractError(f"{path}: no attributes for {len(missing)} catalogue items, first {missing[0]!r}")
    values = frame[list(names)].to_numpy(dtype=np.float64)[rows]
    spread = values.std(axis=0)
    values = (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return TrueAttributes(names, values.astype(np.float32), frame[VISUAL_COLUMN].to_numpy(np.float64)[rows])
