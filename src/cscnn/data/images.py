"""Decode catalogue images into one uint8 array, with errors that name the file and the catalogue row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cscnn.errors import ImageError


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 [3, size, size], RGB, resized when the file has another size."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from exc
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_images(items: pd.DataFrame, images_dir: Path, size: int) -> np.ndarray:
    """All catalogue images as uint8 [N, 3, size, size] in the row order of `items`."""
    out = np.empty((len(items), 3, size, size), dtype=np.uint8)
    for row, (item_id, rel) in enumerate(zip(items["item_id"], items["image"], strict=True)):
        try:
            out[row] = load_image(Path(images_dir) / rel, size)
        except ImageError as exc:
            raise ImageError(f"{exc} (item {item_id!r}, items.parquet row {row})") from exc
    return out
