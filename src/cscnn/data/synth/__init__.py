"""A synthetic world in which category-aware visual modelling has something real to find.

Every item gets a procedurally drawn image whose look depends on its category (object shape, background
palette and texture) and on five continuous visual attributes (hue, size, brightness, stripes, height).
Clicks follow a known logistic model in which the attributes matter *differently per category*: the same
attribute raises the click rate in one category and lowers it in another. The ground truth is written next
to the data (world.json, truth/*.parquet) so tests and docs can check what a model recovers.
See docs/synthetic_world.md.

`world.visual_model` picks what drives the visual part: `attributes` (this default), `many_directions` (eight
attributes, each category its own direction) or `regions` (a badge in a category-specific corner, or the
stripes). truth/probability/<day>.parquet holds every impression's true click probability.

Modules: `params` (the click model's constants and containers), `visual` (the visual models), `world` (the
drawn truth, users and catalogue, the folder and its summary), `render` (item images), `simulate` (the daily
impression logs and their true probabilities).
"""

from __future__ import annotations

from cscnn.data.synth.params import (
    AGE_GROUPS,
    ATTRIBUTE_MEANING,
    ATTRIBUTES,
    CORNERS,
    DEVICES,
    GENDERS,
    LOGIT_FORMULA,
    PROBABILITY_DIR,
    SHAPES,
    TRUTH_DIR,
    Catalogue,
    CategoryStyle,
    Population,
    Truth,
)
from cscnn.data.synth.render import render_images
from cscnn.data.synth.simulate import repeated_in_row
from cscnn.data.synth.visual import attribute_names, feature_names, features
from cscnn.data.synth.world import GENERATOR_VERSION, WORLD_FILE, generate_world

__all__ = [
    "AGE_GROUPS",
    "ATTRIBUTES",
    "ATTRIBUTE_MEANING",
    "CORNERS",
    "DEVICES",
    "GENDERS",
    "GENERATOR_VERSION",
    "LOGIT_FORMULA",
    "PROBABILITY_DIR",
    "SHAPES",
    "TRUTH_DIR",
    "WORLD_FILE",
    "Catalogue",
    "CategoryStyle",
    "Population",
    "Truth",
    "attribute_names",
    "feature_names",
    "features",
    "generate_world",
    "render_images",
    "repeated_in_row",
]
