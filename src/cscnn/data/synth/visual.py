"""The visual part of the click model, one variant per `world.visual_model` (docs/synthetic_world.md).

Every variant has the same form: an item's latent attributes (uniform in [0, 1], or 0/1 for a badge's
presence) become unit-variance, uncorrelated *features* f[item], and its visual score is
w[category] . f[item] with |w[category]| = 1, so the score has unit variance in every world.

- `attributes` (the default world): five attributes; each category has a main and a second attribute that
  rotate through the five, plus a small shared brightness preference.
- `many_directions`: eight attributes; every category has its own random direction in that 8-d space. A
  category-blind CNN with a narrow visual output must keep a few directions for all categories; a
  category-aware one can output the one that matters for the item's category.
- `regions`: what matters sits in a different place per category: a badge in one corner (its presence and
  colour) or the object's stripes; badges in the other corners and the clutter are decoys.
"""

from __future__ import annotations

import numpy as np

from cscnn.data.synth.params import (
    ATTRIBUTE_MEANING,
    ATTRIBUTES,
    BADGE_MEANING,
    BADGE_P,
    CORNERS,
    EXTRA_ATTRIBUTE_MEANING,
    SECONDARY_VISUAL_WEIGHT,
    SHARED_VISUAL_WEIGHT,
)

MANY_ATTRIBUTES = (*ATTRIBUTES, *EXTRA_ATTRIBUTE_MEANING)
REGIONS = (*CORNERS, "texture")  # a badge corner, or the object's stripes
BADGE_PRESENCE_WEIGHT = 0.6  # a badge category's weight on its badge's presence; colour gets 0.8 (unit norm)
BADGE_COLOUR_WEIGHT = 0.8

VISUAL_FORMULA = {
    "attributes": "visual[item] = w[category] . z[item], z = (attribute - 0.5) * sqrt(12) over the five attributes",
    "many_directions": (
        "visual[item] = w[category] . z[item], z = (attribute - 0.5) * sqrt(12) over eight attributes, "
        "w[category] ~ Normal(0, I_8) normalised: every category its own direction"
    ),
    "regions": (
        "visual[item] = sign[category] * z_stripes for a texture category; for a badge category with corner k: "
        "sign[category] * (0.6 * (present_k - 0.5) / 0.5 + 0.8 * present_k * (2 hue_k - 1) / sqrt(0.5 / 3))"
    ),
}
DESCRIPTION = {
    "attributes": "five visual attributes that matter differently per category",
    "many_directions": "eight visual attributes, every category weighting them along its own direction",
    "regions": "a badge in a category-specific corner, or the object's stripes, decides; the rest is decoy",
}


def badge_columns(corner: str) -> tuple[str, str]:
    """The attribute names of a corner's badge: (presence, hue)."""
    return f"{corner}_badge", f"{corner}_badge_hue"


def attribute_names(model: str) -> tuple[str, ...]:
    """The latent attributes every item of this world has (columns of truth/items.parquet)."""
    if model == "attributes":
        return ATTRIBUTES
    if model == "many_directions":
        return MANY_ATTRIBUTES
    return (*ATTRIBUTES, *(name for corner in CORNERS for name in badge_columns(corner)))


def attribute_meaning(model: str) -> dict[str, str]:
    meaning = ATTRIBUTE_MEANING | EXTRA_ATTRIBUTE_MEANING
    meaning |= {name: BADGE_MEANING[name.split("_", 2)[-1]] for c in CORNERS for name in badge_columns(c)}
    return {name: meaning[name] for name in attribute_names(model)}


def feature_names(model: str) -> tuple[str, ...]:
    """The unit-variance features the visual score weights (names of w's entries)."""
    if model != "regions":
        return attribute_names(model)
    return ("stripes", *(name for corner in CORNERS for name in (f"{corner}_badge", f"{corner}_badge_colour")))


def draw_attributes(model: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, A] attributes in attribute_names(model) order; a badge's presence is 1 with chance BADGE_P."""
    names = attribute_names(model)
    attributes = rng.random((n, len(names)))
    if model == "regions":
        for corner in CORNERS:
            column = names.index(badge_columns(corner)[0])
            attributes[:, column] = (attributes[:, column] < BADGE_P).astype(np.float64)
    return attributes


def features(model: str, attributes: np.ndarray) -> np.ndarray:
    """[n, K] unit-variance, uncorrelated features in feature_names(model) order."""
    if model != "regions":
        return (attributes - 0.5) * np.sqrt(12.0)
    names = attribute_names(model)
    columns = [(attributes[:, names.index("stripes")] - 0.5) * np.sqrt(12.0)]
    for corner in CORNERS:
        present, hue = (attributes[:, names.index(name)] for name in badge_columns(corner))
        columns.append((present - BADGE_P) / np.sqrt(BADGE_P * (1.0 - BADGE_P)))
        columns.append(present * (2.0 * hue - 1.0) / np.sqrt(BADGE_P / 3.0))  # E[u^2] = 1/3 for u ~ U(-1, 1)
    return np.column_stack(columns)


def draw_weights(model: str, n_cat: int, rng: np.random.Generator) -> np.ndarray:
    """[C, K] unit-norm weights, one row per category, over feature_names(model)."""
    if model == "attributes":
        return _attribute_weights(n_cat, rng)
    if model == "many_directions":
        weights = rng.normal(0.0, 1.0, (n_cat, len(MANY_ATTRIBUTES)))
        return weights / np.linalg.norm(weights, axis=1, keepdims=True)
    return _region_weights(n_cat, rng)


def _attribute_weights(n_cat: int, rng: np.random.Generator) -> np.ndarray:
    """Per-category weights over ATTRIBUTES: each category cares about its own main attribute.

    Category c's main attribute rotates through the attributes (sign drawn by seed, flipped each time the
    rotation wraps). Its second attribute is category c+1's main one with the opposite sign, so adjacent
    categories disagree about the same attribute. A small shared brightness preference is added on top.
    """
    n_attr = len(ATTRIBUTES)
    order = rng.permutation(n_attr)
    base_sign = rng.choice([-1.0, 1.0], n_attr)
    cats = np.arange(n_cat)
    main = order[cats % n_attr]
    sign = base_sign[cats % n_attr] * np.where((cats // n_attr) % 2 == 0, 1.0, -1.0)
    weights = np.zeros((n_cat, n_attr))
    weights[cats, main] = sign
    if n_cat > 1:
        nxt = (cats + 1) % n_cat
        weights[cats, main[nxt]] += -sign[nxt] * SECONDARY_VISUAL_WEIGHT
    weights[:, ATTRIBUTES.index("brightness")] += SHARED_VISUAL_WEIGHT
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def _region_weights(n_cat: int, rng: np.random.Generator) -> np.ndarray:
    """Category c looks at region order[c % 5] (a corner's badge or the stripes); the sign flips each time the
    rotation wraps, so two categories that share a region disagree about it (10 categories: exactly pairs)."""
    order = rng.permutation(len(REGIONS))
    base_sign = rng.choice([-1.0, 1.0], len(REGIONS))
    names = feature_names("regions")
    weights = np.zeros((n_cat, len(names)))
    for c in range(n_cat):
        region = REGIONS[order[c % len(REGIONS)]]
        sign = base_sign[order[c % len(REGIONS)]] * (1.0 if (c // len(REGIONS)) % 2 == 0 else -1.0)
        if region == "texture":
            weights[c, names.index("stripes")] = sign
        else:
            weights[c, names.index(f"{region}_badge")] = sign * BADGE_PRESENCE_WEIGHT
            weights[c, names.index(f"{region}_badge_colour")] = sign * BADGE_COLOUR_WEIGHT
    return weights


def region_of(weights: np.ndarray) -> str:
    """The region a `regions` category looks at, from its weight row."""
    names = feature_names("regions")
    main = names[int(np.argmax(np.abs(weights)))]
    return "texture" if main == "stripes" else main.removesuffix("_badge_colour")


def category_blind_share(weights: np.ndarray) -> list[float]:
    """Entry d-1: the share of the visual score's variance (averaged over equally frequent categories) that the
    best d-dimensional *linear* summary of the features, one shared by every category, keeps; a category-aware
    summary keeps all of it with d = 1. The features are uncorrelated with unit variance, so this is the sum of
    the d largest eigenvalues of mean_c w_c w_c^T (trace 1)."""
    eigenvalues = np.sort(np.linalg.eigvalsh(weights.T @ weights / len(weights)))[::-1]
    return [round(float(v), 4) for v in np.minimum(np.cumsum(eigenvalues), 1.0)]
