"""A synthetic world in which category-aware visual modelling has something real to find.

Every item gets a procedurally drawn image whose look depends on its category (object shape, background
palette and texture) and on five continuous visual attributes (hue, size, brightness, stripes, height).
Clicks follow a known logistic model in which the attributes matter *differently per category*: the same
attribute raises the click rate in one category and lowers it in another. The ground truth is written next
to the data (world.json, truth/*.parquet) so tests and docs can check what a model recovers.
See docs/synthetic_world.md.

Modules: `params` (the click model's constants and containers), `world` (the drawn truth, users and
catalogue, the folder and its summary), `render` (item images), `simulate` (the daily impression logs).
"""

from __future__ import annotations

from cscnn.data.synth.params import (
    AGE_GROUPS,
    ATTRIBUTE_MEANING,
    ATTRIBUTES,
    DEVICES,
    GENDERS,
    LOGIT_FORMULA,
    SHAPES,
    Catalogue,
    CategoryStyle,
    Population,
    Truth,
)
from cscnn.data.synth.render import render_images
from cscnn.data.synth.simulate import repeated_in_row
from cscnn.data.synth.world import GENERATOR_VERSION, TRUTH_DIR, WORLD_FILE, generate_world

__all__ = [
    "AGE_GROUPS",
    "ATTRIBUTES",
    "ATTRIBUTE_MEANING",
    "DEVICES",
    "GENDERS",
    "GENERATOR_VERSION",
    "LOGIT_FORMULA",
    "SHAPES",
    "TRUTH_DIR",
    "WORLD_FILE",
    "Catalogue",
    "CategoryStyle",
    "Population",
    "Truth",
    "generate_world",
    "render_images",
    "repeated_in_row",
]
