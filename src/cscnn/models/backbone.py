"""A CNN-F-like conv stack sized for small images on CPU, with an attention module after every conv.

Layout (image size S, stem stride s): conv7x7/s -> pool -> conv3x3 -> pool -> conv3x3 x3 -> pool -> linear,
as CNN-F (conv 11x11/4 on 224 px) scaled down. Attention runs on the feature map of its conv (sizes S/s,
S/2s, S/4s, S/4s, S/4s) before any pooling.
There is no batch normalisation on purpose: batch statistics would make an image's embedding depend on
which other images share its batch, which breaks the per-batch image dedup (each unique image once).
`model.conv_norm=group` puts a GroupNorm after every conv instead: its statistics are each image's own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cscnn.config import ModelConfig
from cscnn.errors import ConfigError
from cscnn.models.attention import ATTENTIONS, Maps
from cscnn.models.layers import seeded
from cscnn.variants import Variant

# ImageNet-like normalisation of uint8 pixels, fixed so that the embedding table and training agree.
PIXEL_MEAN, PIXEL_STD = 127.5, 64.0
NORM_GROUPS = 8  # GroupNorm groups (fewer where the channels are not a multiple of 8)


def _feature_sizes(image_size: int, stride: int) -> list[int]:
    if image_size % (8 * stride):
        raise ConfigError(f"image_size must be a multiple of 8 x stem_stride = {8 * stride}, got {image_size}")
    first = image_size // stride
    return [first, first // 2, first // 4, first // 4, first // 4]


def _conv(in_channels: int, out_channels: int, layer: int, cfg: ModelConfig) -> nn.Conv2d:
    kernel, stride = (7, cfg.stem_stride) if layer == 0 else (3, 1)
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2)


class VisualBackbone(nn.Module):
    """Image (uint8) + category -> visual vector. Categories are 1-based; 0 means unseen (mean prior)."""

    def __init__(self, cfg: ModelConfig, n_categories: int, variant: Variant, seed: int = 0) -> None:
        super().__init__()
        if len(cfg.conv_channels) != 5:
            raise ConfigError(f"conv_channels needs 5 entries (CNN-F layout), got {cfg.conv_channels}")
        sizes = _feature_sizes(cfg.image_size, cfg.stem_stride)
        channels = [3, *cfg.conv_channels]
        with seeded(seed):  # the same convolutions for every variant with the same seed
            self.convs = nn.ModuleList(_conv(channels[i], channels[i + 1], i, cfg) for i in range(len(sizes)))
        self.norms = nn.ModuleList(
            nn.GroupNorm(math.gcd(NORM_GROUPS, c), c) if cfg.conv_norm == "group" else nn.Identity()
            for c in channels[1:]
        )
        build_attention = ATTENTIONS[variant.attention]
        prior_categories = n_categories if variant.category_aware else 0
        with seeded(seed + 1):
            self.attentions = nn.ModuleList(
                build_attention(channels[i + 1], size, cfg, prior_categories) for i, size in enumerate(sizes)
            )
        self.pool_after = {0, 1, 4}
        final = sizes[-1] // 2
        with seeded(seed + 2):
            self.project = nn.Linear(channels[-1] * final * final, cfg.visual_dim)
        if cfg.conv_init == "kaiming":
            _scale_preserving_init(self.convs, self.project)

    def forward(self, images: torch.Tensor, category: torch.Tensor, return_attention: bool = False) -> dict:
        # one new tensor, normalised in place: each full-size temporary costs a pass and fresh pages
        x = images.to(torch.float32, copy=True).sub_(PIXEL_MEAN).mul_(1.0 / PIXEL_STD)
        maps: list[Maps] = []
        for i, (conv, norm, attention) in enumerate(zip(self.convs, self.norms, self.attentions, strict=True)):
            x, layer_maps = attention(torch.relu(norm(conv(x))), category)
            maps.append(layer_maps)
            if i in self.pool_after:
                x = nn.functional.max_pool2d(x, 2)
        out = {"visual": self.project(x.flatten(1))}
        if return_attention:
            out["attention"] = maps
        return out


def _scale_preserving_init(convs: nn.ModuleList, project: nn.Linear) -> None:
    """He initialisation (fan-in, ReLU gain) of the convolutions with zero biases, LeCun of the projection: the
    activations keep their scale through the stack. PyTorch's default (uniform with a = sqrt(5)) shrinks
    them ~2x per layer: ~16x over the five layers of this backbone (docs/model.md)."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
    nn.init.normal_(project.weight, std=project.in_features**-0.5)
    nn.init.zeros_(project.bias)
