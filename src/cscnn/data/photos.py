"""Product images cut from real photographs that ship inside installed packages, and their pixel statistics.

The photographs come from scikit-image's wheel (`skimage.data`: only the files bundled with it, never a pooch
download) and scikit-learn's `load_sample_image` (china, flower). A category of the photo world is a group of
source photographs plus the one pixel statistic its buyers react to (`Category.statistic`, `Category.sign`);
`cscnn.data.photo_world` turns that into review behaviour.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cscnn.errors import ConfigError

# What buyers of a category look at, computed from the decoded pixels of the product image (RGB in [0, 1]).
STATISTICS = ("brightness", "contrast", "saturation", "warmth", "edges", "top_light")
STATISTIC_MEANING = {
    "brightness": "mean luma (0.299 R + 0.587 G + 0.114 B)",
    "contrast": "standard deviation of luma",
    "saturation": "mean HSV saturation, (max - min) / max of the channels",
    "warmth": "mean of red minus blue",
    "edges": "edge density: mean absolute luma difference between neighbouring pixels (both axes)",
    "top_light": "mean luma of the top half minus that of the bottom half",
}
MIN_CROP_SHARE, MAX_CROP_SHARE = 0.22, 0.75  # crop side as a share of the photo's shorter side
BRIGHTNESS_JITTER = 0.12  # the crop's brightness is scaled by 1 +- this
CHANNEL_JITTER = 0.05  # and each channel by 1 +- this (a mild colour cast)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Category:
    """A leaf category: its Amazon department, source photographs, and the buyers' visual taste."""

    name: str  # the leaf of the category path (what `import-amazon` uses by default)
    department: str  # the first level of the path
    sources: tuple[str, ...]  # photograph names, see `load_photo`
    statistic: str  # one of STATISTICS
    sign: int  # +1: buyers favour crops high in the statistic; -1: low
    log_price: float  # mean of the log price

    @property
    def taste(self) -> str:
        return f"{'high' if self.sign > 0 else 'low'} {self.statistic}"


# Pairs of categories react to the same statistic with opposite signs (brightness, saturation, edges, top_light),
# so a model that ignores the category cannot use the statistic well.
CATEGORIES = (
    Category("Space Posters", "Posters & Prints", ("rocket", "hubble_deep_field", "moon"), "brightness", 1, 2.8),
    Category("Coffee & Espresso", "Grocery & Gourmet Food", ("coffee",), "brightness", -1, 2.5),
    Category("Motorcycle Accessories", "Automotive", ("motorcycle_left", "motorcycle_right"), "saturation", 1, 3.8),
    Category("Travel Photography", "Posters & Prints", ("china",), "saturation", -1, 3.1),
    Category("Garden & Flowers", "Patio, Lawn & Garden", ("flower", "grass"), "edges", 1, 2.9),
    Category("Coins & Clocks", "Collectibles", ("coins", "clock"), "edges", -1, 3.5),
    Category("Portrait Prints", "Posters & Prints", ("astronaut", "camera"), "top_light", 1, 3.0),
    Category("Tiles & Stone", "Tools & Home Improvement", ("brick", "gravel"), "top_light", -1, 3.3),
    Category("Cat Supplies", "Pet Supplies", ("chelsea",), "warmth", 1, 2.6),
    Category("Lab Supplies", "Industrial & Scientific", ("retina", "immunohistochemistry", "cell"), "contrast", 1, 4.0),
)
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)
MOTORCYCLE = ("motorcycle_left", "motorcycle_right")  # the two views of skimage.data.stereo_motorcycle
SKLEARN_PHOTOS = ("china", "flower")  # sklearn.datasets.load_sample_image(<name>.jpg)
PHOTOS = (*SKIMAGE_PHOTOS, *MOTORCYCLE, *SKLEARN_PHOTOS)


def load_photo(name: str) -> np.ndarray:
    """The photograph `name` as an RGB uint8 array (grey photographs get three equal channels)."""
    if name in SKIMAGE_PHOTOS or name in MOTORCYCLE:
        import skimage.data

        if name in MOTORCYCLE:
            left, right, _ = skimage.data.stereo_motorcycle()
            pixels = left if name == "motorcycle_left" else right
        else:
            pixels = getattr(skimage.data, name)()
    elif name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        pixels = load_sample_image(f"{name}.jpg")
    else:
        raise ConfigError(f"unknown photograph {name!r}; choose from {sorted(PHOTOS)}")
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3]).astype(np.uint8)


def cut_product(photo: np.ndarray, size: int, rng: np.random.Generator) -> bytes:
    """A JPEG product image: a random square crop (varied scale and position), maybe mirrored, resized to
    `size` x `size`, with a mild brightness and colour jitter."""
    height, width = photo.shape[:2]
    side = max(8, round(rng.uniform(MIN_CROP_SHARE, MAX_CROP_SHARE) * min(height, width)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    image = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.LANCZOS)
    gain = (1.0 + rng.uniform(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER)) * (
        1.0 + rng.uniform(-CHANNEL_JITTER, CHANNEL_JITTER, size=3)
    )
    pixels = np.clip(np.asarray(image, dtype=np.float64) * gain, 0, 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def decode(image_bytes: bytes) -> np.ndarray:
    """RGB float64 pixels in [0, 1] of an encoded image: exactly what a reader of the image file sees."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def pixel_statistics(rgb: np.ndarray) -> np.ndarray:
    """The STATISTICS of one image (H x W x 3 floats in [0, 1]), in that order."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0)
    edges = np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()
    half = luma.shape[0] // 2
    return np.array(
        [
            luma.mean(),
            luma.std(),
            saturation.mean(),
            (red - blue).mean(),
            edges,
            luma[:half].mean() - luma[half:].mean(),
        ]
    )
