"""Pictures of what the spatial attention looks at, per category: one model's maps and learned priors (logged
with every candidate), and CBAM against CSCNN on the same items (`cscnn attention`, docs/model.md).

A spatial map is shown relative to its own mean (map / mean(map)) on one logarithmic colour scale shared by
every panel, from half the mean (blue) to twice the mean (red). Raw sigmoid maps sit near 0.5 everywhere
and, drawn from 0 to 1, read as uniform tints; relative maps show where a model looks more or less.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cscnn.data.io import World
from cscnn.errors import ConfigError
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.features import image_bank
from cscnn.training.plots import pyplot, save_figure

RELATIVE_RANGE = (0.5, 2.0)  # colour scale of map / mean(map)
MAX_CATEGORIES = 8


def _picked(world: World, categories: list[str], per_category: int) -> World:
    """A few items of each category (the first ones in catalogue order: deterministic), as a small world."""
    items = world.items[world.items["category"].isin(categories)]
    picked = items.groupby("category", sort=True).head(per_category).reset_index(drop=True)
    return World(root=world.root, items=picked, users=world.users, days=world.days)


@torch.no_grad()
def _spatial_maps(loaded: tuple, world: World, layer: int) -> tuple[np.ndarray, np.ndarray] | None:
    """([N, H, W] relative spatial maps of `layer`, [N, S, S, 3] images) for `world`'s items."""
    model, encoder, cfg, _ = loaded
    if not model.uses_images or model.visual_input != "image":
        return None
    bank = image_bank(world, encoder, cfg.model.image_size)
    maps = model.encode_images(bank.images, bank.categories, return_attention=True)["attention"][layer]
    if "spatial" not in maps:
        return None
    spatial = maps["spatial"].numpy()
    return spatial / spatial.mean(axis=(1, 2), keepdims=True), bank.images.permute(0, 2, 3, 1).numpy()


def _overlay(ax, image: np.ndarray, relative: np.ndarray, norm, title: str) -> None:
    ax.imshow(image)
    ax.imshow(relative, cmap="RdBu_r", norm=norm, alpha=0.55, extent=(0, image.shape[1], image.shape[0], 0))
    ax.set_title(title, fontsize=6)


def _categories(world: World, encoder) -> list[str]:
    present = set(world.items["category"])
    return [c for c in encoder.categories if c in present][:MAX_CATEGORIES]


def attention_png(model_dir: Path, world: World, out: Path, per_category: int = 3, layer: int = 0) -> Path | None:
    """Spatial attention of one model over a few items of each category, with the category's learned prior
    map (CSCNN) in the first column. None for a model without spatial attention."""
    loaded = load_checkpoint(model_dir)
    model, encoder = loaded[0], loaded[1]
    categories = _categories(world, encoder)
    sub = _picked(world, categories, per_category)
    found = _spatial_maps(loaded, sub, layer)
    if found is None:
        return None
    relative, images = found
    prior = model.backbone.attentions[layer].spatial.prior
    plt = pyplot()
    from matplotlib.colors import LogNorm

    norm = LogNorm(*RELATIVE_RANGE, clip=True)
    columns = per_category + (prior is not None)
    fig, axes = plt.subplots(len(categories), columns, figsize=(1.5 * columns, 1.5 * len(categories)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    category_of = sub.items["category"].to_numpy()
    for r, category in enumerate(categories):
        if prior is not None:  # priors are indexed like the encoder's categories (0-based here)
            values = prior.detach()[encoder.categories.index(category)]
            _prior_panel(axes[r][0], values, relative.shape[1:], f"{category} prior")
        for c, row in enumerate(np.flatnonzero(category_of == category)[:per_category]):
            _overlay(axes[r][c + (prior is not None)], images[row], relative[row], norm, category)
    fig.suptitle(f"spatial attention, layer {layer + 1} (map / its mean; red = looks more)", fontsize=8)
    return save_figure(fig, plt, out)


def _prior_panel(ax, prior: torch.Tensor, shape: tuple[int, int], title: str) -> None:
    values = prior.view(*shape).numpy()
    limit = float(np.abs(values).max()) or 1.0
    ax.imshow(values, cmap="PuOr_r", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=6)


def attention_comparison_png(
    models: dict[str, Path], world: World, out: Path, per_category: int = 2, layer: int = 0
) -> Path:
    """For each category (rows) and a few of its items: the image, then each model's relative spatial map
    over it (e.g. CBAM, CSCNN), on one colour scale."""
    loaded = {name: load_checkpoint(model_dir) for name, model_dir in models.items()}
    categories = _categories(world, next(iter(loaded.values()))[1])
    sub = _picked(world, categories, per_category)
    maps = {}
    for name, one in loaded.items():
        found = _spatial_maps(one, sub, layer)
        if found is None:
            raise ConfigError(f"{name} ({models[name]}) has no spatial attention to draw")
        maps[name], images = found
    plt = pyplot()
    from matplotlib.colors import LogNorm

    norm = LogNorm(*RELATIVE_RANGE, clip=True)
    columns = per_category * (1 + len(models))
    fig, axes = plt.subplots(len(categories), columns, figsize=(1.3 * columns, 1.4 * len(categories)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    category_of = sub.items["category"].to_numpy()
    for r, category in enumerate(categories):
        for i, row in enumerate(np.flatnonzero(category_of == category)[:per_category]):
            base = i * (1 + len(models))
            axes[r][base].imshow(images[row])
            axes[r][base].set_title(f"{category} item", fontsize=6)
            for j, name in enumerate(models):
                _overlay(axes[r][base + 1 + j], images[row], maps[name][row], norm, name)
    fig.suptitle(f"spatial attention, layer {layer + 1}: map / its mean (red: more, blue: less)", fontsize=8)
    return save_figure(fig, plt, out)
