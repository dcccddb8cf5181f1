"""A CNN-F-like conv stack sized for small images on CPU, with an attention module after every conv.

Layout (image size S, stem stride s): conv7x7/s -> pool -> conv3x3 -> pool -> conv3x3 x3 -> pool -> linear,
as CNN-F (conv 11x11/4 on 224 px) scaled down. Attention runs on the feature map of its conv (sizes S/s,
S/2s, S/4s, S/4s, S/4s) before any pooling.
There is no batch normalisation on purpose: batch statistics would make an image's embedding depend on
which other images share its batch, which breaks the per-batch image dedup (each unique image once).
"""

from __future__ import annotations

import torch
from torch import nn

from cscnn.config import ModelConfig
from cscnn.models.attention import ATTENTIONS, Maps
from cscnn.variants import Variant

# ImageNet-like normalisation of uint8 pixels, fixed so that the embedding table and training agree.
PIXEL_MEAN, PIXEL_STD = 127.5, 64.0


def _feature_sizes(image_size: int, stride: int) -> list[int]:
    if image_size % (8 * stride):
        raise ValueError(f"image_size must be a multiple of 8 x stem_stride = {8 * stride}, got {image_size}")
    first = image_size // stride
    return [first, first // 2, first // 4, first // 4, first // 4]


class VisualBackbone(nn.Module):
    """Image (uint8) + category -> visual vector. Categories are 1-based; 0 means unseen (mean prior)."""

    def __init__(self, cfg: ModelConfig, n_categories: int, variant: Variant) -> None:
        super().__init__()
        if len(cfg.conv_channels) != 5:
            raise ValueError(f"conv_channels needs 5 entries (CNN-F layout), got {cfg.conv_channels}")
        sizes = _feature_sizes(cfg.image_size, cfg.stem_stride)
        build_attention = ATTENTIONS[variant.attention]
        prior_categories = n_categories if variant.category_aware else 0
        channels = [3, *cfg.conv_channels]
        self.convs = nn.ModuleList()
        self.attentions = nn.ModuleList()
        for i, size in enumerate(sizes):
            kernel, stride = (7, cfg.stem_stride) if i == 0 else (3, 1)
            self.convs.append(nn.Conv2d(channels[i], channels[i + 1], kernel, stride, padding=kernel // 2))
            self.attentions.append(build_attention(channels[i + 1], size, cfg, prior_categories))
        self.pool_after = {0, 1, 4}
        final = sizes[-1] // 2
        self.project = nn.Linear(channels[-1] * final * final, cfg.visual_dim)

    def forward(self, images: torch.Tensor, category: torch.Tensor, return_attention: bool = False) -> dict:
        x = (images.float() - PIXEL_MEAN) / PIXEL_STD
        maps: list[Maps] = []
        for i, (conv, attention) in enumerate(zip(self.convs, self.attentions, strict=True)):
            x, layer_maps = attention(torch.relu(conv(x)), category)
            maps.append(layer_maps)
            if i in self.pool_after:
                x = nn.functional.max_pool2d(x, 2)
        out = {"visual": self.project(x.flatten(1))}
        if return_attention:
            out["attention"] = maps
        return out
