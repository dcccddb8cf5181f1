"""The click model's fixed parameters and the containers the generator passes between its stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ATTRIBUTES = ("hue", "size", "brightness", "stripes", "height")
ATTRIBUTE_MEANING = {
    "hue": "object hue, 0 -> red, 1 -> violet (0.8 of the colour wheel, no wrap-around)",
    "size": "object radius, 0 -> 14% of the image side, 1 -> 32%",
    "brightness": "object HSV value, 0 -> 0.45, 1 -> 1.0",
    "stripes": "stripe frequency on the object, 0 -> 1.5, 1 -> 7 cycles per image side",
    "height": "vertical placement of the object centre, 0 -> 70% down the image, 1 -> 30% down",
}
# The attributes the other visual models add (docs/synthetic_world.md); the default world keeps the five above.
EXTRA_ATTRIBUTE_MEANING = {
    "saturation": "object HSV saturation, 0 -> 0.4, 1 -> 1.0 (fixed at 0.85 where this attribute is absent)",
    "stripe_angle": "stripe orientation in the image frame, 0 -> vertical, 1 -> horizontal (else: the object's own)",
    "aspect": "object aspect ratio at equal area, 0 -> 1.5x wider than tall, 1 -> 1.5x taller than wide",
}
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
BADGE_MEANING = {
    "badge": "a framed badge (white frame, coloured inside) in this corner: 1 present, 0 absent",
    "badge_hue": "hue of that badge, 0 -> red, 1 -> violet (drawn for every item, seen only when present)",
}
BADGE_P = 0.5  # chance each corner holds a badge, independently per corner and item
TRUTH_DIR = "truth"
PROBABILITY_DIR = "probability"  # truth/probability/<day>.parquet: the true click probability of every row
SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "star", "hexagon")
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.2, 0.3, 0.25, 0.15, 0.1)
GENDERS = ("f", "m", "unknown")
GENDER_P = (0.48, 0.48, 0.04)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_P = (0.6, 0.3, 0.1)
DEVICE_EFFECT = (0.1, -0.1, 0.0)

N_SEGMENTS = 6  # latent user segments: each has its own taste over categories
SEGMENT_FROM_DEMOGRAPHICS = 0.6  # chance a user's segment is the one their (age_group, gender) maps to
SEGMENT_SHARE_OF_AFFINITY = 0.8  # the rest of a user's category affinity is individual taste
SHARED_VISUAL_WEIGHT = 0.3  # a category-independent brightness preference, small next to the specific part
SECONDARY_VISUAL_WEIGHT = 0.5  # each category's second attribute is the next category's main one, sign flipped
NEW_ITEM_SHARE = 0.2  # share of a day's impressions that go to the items introduced that day
BRANDS_PER_CATEGORY = 4
BRAND_EFFECT_STD = 0.2
PRICE_EFFECT = 0.15  # logit per std of log price below the category's typical price
PRICE_LOG_STD = 0.5
ITEM_NOISE_STD = 0.25  # per-item appeal not visible in the image: learnable only from the item id
USER_ACTIVITY_STD = 1.0  # log-normal spread of how many requests a user makes

LOGIT_FORMULA = (
    "logit = base_logit + affinity_weight * affinity[user, category] + visual_weight * visual[item] "
    "- position_weight * (position - 1) + device_effect[device] + item_effect[item]; "
    "click ~ Bernoulli(sigmoid(logit)); visual[item] = w[category] . f[item], f = unit-variance, uncorrelated "
    "features of the item's visual attributes (see `visual`), |w[category]| = 1; "
    "item_effect = brand_effect + price_effect + item_noise"
)


@dataclass(frozen=True)
class CategoryStyle:
    """How each category looks: one entry per category."""

    shape: np.ndarray  # [C] index into SHAPES
    background: np.ndarray  # [C, 3] RGB in 0..1
    texture_freq: np.ndarray  # [C] background texture cycles per image side
    texture_angle: np.ndarray  # [C] background texture orientation, radians


@dataclass(frozen=True)
class Truth:
    """The parameters of the click model, drawn once per seed."""

    style: CategoryStyle
    visual_weights: np.ndarray  # [C, K] over the visual model's features, unit norm rows
    segment_affinity: np.ndarray  # [N_SEGMENTS, C]
    demographic_segment: np.ndarray  # [len(AGE_GROUPS), len(GENDERS)] -> segment
    brand_effect: np.ndarray  # [C * BRANDS_PER_CATEGORY]
    category_log_price: np.ndarray  # [C] typical log price


@dataclass(frozen=True)
class Population:
    users: pd.DataFrame  # contract columns + segment
    affinity: np.ndarray  # [U, C]
    activity: np.ndarray  # [U] probability of making a request


@dataclass(frozen=True)
class Catalogue:
    items: pd.DataFrame  # contract columns + first_day
    attributes: np.ndarray  # [N, A] in 0..1, columns as visual.attribute_names(world.visual_model)
    category_index: np.ndarray  # [N]
    first_day: np.ndarray  # [N] day index the item enters the catalogue
    visual: np.ndarray  # [N] visual score (unit variance)
    item_effect: np.ndarray  # [N] brand + price + noise
