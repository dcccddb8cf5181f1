"""Item images: the category's shape on its textured background, drawn from the item's visual attributes.

Attributes a world does not have keep the default world's look (saturation 0.85, stripes along the object's
rotation, aspect 1, no badges), so the default world's pixels do not depend on the other visual models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cscnn.config import WorldConfig
from cscnn.data.synth.params import ATTRIBUTES, CORNERS, SHAPES, Catalogue, CategoryStyle

RENDER_BATCH = 256
TEXTURE_DEPTH = 0.25
STRIPE_DEPTH = 0.4
PNG_COMPRESS_LEVEL = 1
BADGE_SIDE = 0.18  # badge square, share of the image side (white frame included)
BADGE_INSET = 0.04  # gap between the badge and the image border
BADGE_FRAME = 0.035  # width of the white frame


def render_images(
    attributes: np.ndarray,
    category_index: np.ndarray,
    style: CategoryStyle,
    size: int,
    clutter: int,
    pixel_noise: float,
    rng: np.random.Generator,
    names: tuple[str, ...] = ATTRIBUTES,
) -> np.ndarray:
    """Draw one RGB image per item, uint8 [N, size, size, 3], in vectorised batches; `names` are the
    attribute columns (cscnn.data.synth.visual.attribute_names)."""
    images = np.empty((len(attributes), size, size, 3), dtype=np.uint8)
    for start in range(0, len(attributes), RENDER_BATCH):
        stop = start + RENDER_BATCH
        attr = {name: attributes[start:stop, i] for i, name in enumerate(names)}
        images[start:stop] = _render_batch(attr, category_index[start:stop], style, size, clutter, pixel_noise, rng)
    return images


def write_images(
    catalogue: Catalogue,
    style: CategoryStyle,
    cfg: WorldConfig,
    folder: Path,
    rng: np.random.Generator,
    names: tuple[str, ...] = ATTRIBUTES,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = render_images(
        catalogue.attributes,
        catalogue.category_index,
        style,
        cfg.image_size,
        cfg.clutter,
        cfg.pixel_noise,
        rng,
        names,
    )
    for name, pixels in zip(catalogue.items["image"], images, strict=True):
        Image.fromarray(pixels).save(folder / name, compress_level=PNG_COMPRESS_LEVEL)


def hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB in 0..1, shape [..., 3]."""
    k = (np.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
    chroma = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return value[..., None] - value[..., None] * saturation[..., None] * chroma


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-the-shape mask in the object's own frame (unit radius)."""
    if shape == "disc":
        return u**2 + v**2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":
        return (v <= 0.5) & (v >= -1.0 + np.sqrt(3.0) * np.abs(u))
    if shape == "ring":
        radius = np.sqrt(u**2 + v**2)
        return (radius >= 0.55) & (radius <= 1.0)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "star":
        return np.sqrt(u**2 + v**2) <= 0.5 + 0.25 * (1.0 + np.cos(5.0 * np.arctan2(v, u)))
    if shape == "hexagon":
        return np.maximum(0.866 * np.abs(u) + 0.5 * np.abs(v), np.abs(v)) <= 0.9
    raise ValueError(f"unknown shape {shape!r}")


def _render_batch(
    attr: dict[str, np.ndarray],
    category_index: np.ndarray,
    style: CategoryStyle,
    size: int,
    clutter: int,
    pixel_noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw into colour planes [3, B, S, S] (contiguous per channel, float32), transpose once at the end.

    x is [1, 1, S] and y is [1, S, 1], so per-item terms stay separable until they are combined.
    """
    grid = ((np.arange(size) + 0.5) / size).astype(np.float32)
    x, y = grid[None, None, :], grid[None, :, None]
    planes = _background(category_index, style, x, y, rng)
    for _ in range(clutter):
        _draw_distractor(planes, x, y, rng)
    _draw_object(planes, attr, style.shape[category_index], x, y, rng)
    _draw_badges(planes, attr, x, y)
    planes *= 255.0
    planes += rng.standard_normal(planes.shape, dtype=np.float32) * np.float32(pixel_noise)
    planes += 0.5
    np.clip(planes, 0.0, 255.0, out=planes)
    return planes.astype(np.uint8).transpose(1, 2, 3, 0)


def _column(values: np.ndarray) -> np.ndarray:
    """Per-item scalars as float32 shaped to broadcast against [B, H, W] grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _wave(along_x: np.ndarray, along_y: np.ndarray) -> np.ndarray:
    """sin(along_x + along_y) for [B, 1, W] and [B, H, 1] phases: two outer products instead of H*W sines."""
    return np.sin(along_x) * np.cos(along_y) + np.cos(along_x) * np.sin(along_y)


def _background(
    category_index: np.ndarray, style: CategoryStyle, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The category's palette under its own oriented wave texture (random phase per item)."""
    angle = style.texture_angle[category_index]
    omega = 2.0 * np.pi * style.texture_freq[category_index]
    phase = _column(rng.uniform(0.0, 2.0 * np.pi, len(category_index)))
    wave = 0.5 + 0.5 * _wave(_column(omega * np.cos(angle)) * x + phase, _column(omega * np.sin(angle)) * y)
    shade = 1.0 - np.float32(TEXTURE_DEPTH) * wave
    return shade[None] * style.background[category_index].T.astype(np.float32)[:, :, None, None]


def _paint(planes: np.ndarray, colour: np.ndarray, mask: np.ndarray) -> None:
    """Set the pixels under `mask` [B, S, S] to each item's `colour` [B, 3], plane by plane."""
    for channel in range(3):
        np.copyto(planes[channel], _column(colour[:, channel]), where=mask)


def _draw_distractor(planes: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """Paint one small disc or square of random colour and place (behind the main object)."""
    batch = planes.shape[1]
    dx2 = (x - _column(rng.uniform(0.05, 0.95, batch))) ** 2
    dy2 = (y - _column(rng.uniform(0.05, 0.95, batch))) ** 2
    radius = _column(rng.uniform(0.03, 0.08, batch))
    is_disc = rng.random(batch)[:, None, None] < 0.5
    mask = np.where(is_disc, dx2 + dy2, np.maximum(dx2, dy2)) <= radius**2
    _paint(planes, rng.random((batch, 3)), mask)


def _draw_object(
    planes: np.ndarray,
    attr: dict[str, np.ndarray],
    shape: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint the category's shape, coloured, sized, shaped, striped and placed by the item's attributes."""
    batch = planes.shape[1]
    radius = 0.14 + 0.18 * attr["size"]
    rotation = rng.uniform(-np.pi / 6, np.pi / 6, batch)
    dx = x - _column(rng.uniform(0.35, 0.65, batch))
    dy = y - _column(0.7 - 0.4 * attr["height"])
    cos, sin = np.cos(rotation), np.sin(rotation)
    radius_u, radius_v = radius, radius
    if "aspect" in attr:  # same area, stretched along the object's own vertical axis
        stretch = np.sqrt(1.5 ** (2.0 * attr["aspect"] - 1.0))
        radius_u, radius_v = radius / stretch, radius * stretch
    u = _column(cos / radius_u) * dx + _column(sin / radius_u) * dy
    v = _column(-sin / radius_v) * dx + _column(cos / radius_v) * dy
    mask = np.zeros(planes.shape[1:], dtype=bool)
    for shape_id in np.unique(shape):
        rows = shape == shape_id
        mask[rows] = _shape_mask(SHAPES[shape_id], u[rows], v[rows])
    stripe_cos, stripe_sin = cos, sin
    if "stripe_angle" in attr:  # in the image frame, whatever the object's rotation
        stripe_cos, stripe_sin = np.cos(0.5 * np.pi * attr["stripe_angle"]), np.sin(0.5 * np.pi * attr["stripe_angle"])
    omega = 2.0 * np.pi * (1.5 + 5.5 * attr["stripes"])
    dark = _wave(_column(omega * stripe_cos) * dx, _column(omega * stripe_sin) * dy) > 0
    saturation = 0.4 + 0.6 * attr["saturation"] if "saturation" in attr else np.full(batch, 0.85)
    colour = hsv_to_rgb(0.8 * attr["hue"], saturation, 0.45 + 0.55 * attr["brightness"])
    _paint(planes, colour, mask & ~dark)
    _paint(planes, colour * (1.0 - STRIPE_DEPTH), mask & dark)


def _draw_badges(planes: np.ndarray, attr: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> None:
    """Paint each present corner badge on top of everything: a white frame around a square of the badge's hue."""
    batch = planes.shape[1]
    white = np.ones((batch, 3))
    for corner in CORNERS:
        present = attr.get(f"{corner}_badge")
        if present is None or not (present > 0.5).any():
            continue
        left = BADGE_INSET if corner.endswith("left") else 1.0 - BADGE_INSET - BADGE_SIDE
        top = BADGE_INSET if corner.startswith("top") else 1.0 - BADGE_INSET - BADGE_SIDE
        rows = (present > 0.5)[:, None, None]
        _paint(planes, white, rows & _square(x, y, left, top, BADGE_SIDE))
        colour = hsv_to_rgb(0.8 * attr[f"{corner}_badge_hue"], np.full(batch, 0.9), np.full(batch, 0.95))
        inner = _square(x, y, left + BADGE_FRAME, top + BADGE_FRAME, BADGE_SIDE - 2.0 * BADGE_FRAME)
        _paint(planes, colour, rows & inner)


def _square(x: np.ndarray, y: np.ndarray, left: float, top: float, side: float) -> np.ndarray:
    """[1, S, S] mask of the pixels whose centres lie in the square."""
    return (x >= left) & (x <= left + side) & (y >= top) & (y <= top + side)
