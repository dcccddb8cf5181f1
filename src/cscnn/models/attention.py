"""Attention modules applied after every convolutional layer of the visual backbone.

All share one call signature, `module(features, category) -> (features, maps)`, so the backbone does not
care which one it holds. `maps` holds the attention weights (`channel`: [N, C], `spatial`: [N, H, W]) for
inspection; only category-aware modules use `category`. `ATTENTIONS` at the end names each kind for the
variant table (`cscnn.variants`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cscnn.config import ModelConfig

Maps = dict[str, torch.Tensor]


class NoAttention(nn.Module):
    def forward(self, x: torch.Tensor, category: torch.Tensor) -> tuple[torch.Tensor, Maps]:
        return x, {}


class SqueezeExcitation(nn.Module):
    """SE (Hu et al. 2018): channel weights from global average pooling; not category-aware."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> tuple[torch.Tensor, Maps]:
        weights = torch.sigmoid(self.mlp(x.mean(dim=(2, 3))))
        return x * weights[:, :, None, None], {"channel": weights}


# Category priors start as N(0, 1), like embedding rows: a near-zero start makes every category look alike
# to the attention MLP until training has pulled them apart.


def _category_prior(prior: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """Rows of `prior` ([n_categories, ...]) for 1-based `category`; index 0 (unseen) gets their mean.

    The mean prior is the documented fallback for a category the model never saw in training.
    """
    table = torch.cat([prior.mean(dim=0, keepdim=True), prior], dim=0)
    return table[category]


class ChannelAttention(nn.Module):
    """`Mc(F, k) = sigmoid(MLP([AvgPool(F); Ac_k]) + MLP([MaxPool(F); Ac_k]))` with a shared MLP.

    With `n_categories == 0` it is CBAM's channel attention (no prior).
    """

    def __init__(self, channels: int, reduction: int, n_categories: int = 0, prior_dim: int = 0) -> None:
        super().__init__()
        self.prior = nn.Parameter(torch.randn(n_categories, prior_dim)) if n_categories else None
        in_dim = channels + (prior_dim if n_categories else 0)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        # max_pool/max keep the argmax for backward; amax's backward (tie-splitting) is several times slower.
        avg, mx = x.mean(dim=(2, 3)), nn.functional.adaptive_max_pool2d(x, 1).flatten(1)
        if self.prior is not None:
            prior = _category_prior(self.prior, category)
            avg, mx = torch.cat([avg, prior], dim=1), torch.cat([mx, prior], dim=1)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """`Ms(F', k) = sigmoid(conv([mean_c(F'); max_c(F'); As_k]))`, `As_k` a learned HxW map per category.

    With `n_categories == 0` it is CBAM's spatial attention (no prior map).
    """

    def __init__(self, height: int, width: int, kernel: int, n_categories: int = 0) -> None:
        super().__init__()
        self.shape = (height, width)
        self.prior = nn.Parameter(torch.randn(n_categories, height * width)) if n_categories else None
        in_channels = 3 if n_categories else 2
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        parts = [x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values]
        if self.prior is not None:
            parts.append(_category_prior(self.prior, category).view(-1, 1, *self.shape))
        return torch.sigmoid(self.conv(torch.cat(parts, dim=1))).squeeze(1)


class ChannelSpatialAttention(nn.Module):
    """`F' = Mc ⊙ F`, then `F'' = Ms ⊙ F'`: CBAM when not category-aware, CSCNN when it is.

    Either half can be switched off for the channel-only / spatial-only ablations.
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        *,
        reduction: int,
        kernel: int,
        n_categories: int = 0,
        prior_dim: int = 0,
        use_channel: bool = True,
        use_spatial: bool = True,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, n_categories, prior_dim) if use_channel else None
        self.spatial = SpatialAttention(height, width, kernel, n_categories) if use_spatial else None

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> tuple[torch.Tensor, Maps]:
        maps: Maps = {}
        if self.channel is not None:
            maps["channel"] = self.channel(x, category)
            x = x * maps["channel"][:, :, None, None]
        if self.spatial is not None:
            maps["spatial"] = self.spatial(x, category)
            x = x * maps["spatial"][:, None]
        return x, maps


# name -> builder(channels, feature-map size, model config, number of categories; 0 when not category-aware)
AttentionBuilder = Callable[[int, int, ModelConfig, int], nn.Module]


def _channel_spatial(use_channel: bool = True, use_spatial: bool = True) -> AttentionBuilder:
    def build(channels: int, size: int, cfg: ModelConfig, n_categories: int) -> nn.Module:
        return ChannelSpatialAttention(
            channels,
            size,
            size,
            reduction=cfg.reduction,
            kernel=cfg.spatial_kernel,
            n_categories=n_categories,
            prior_dim=cfg.channel_prior_dim,
            use_channel=use_channel,
            use_spatial=use_spatial,
        )

    return build


ATTENTIONS: dict[str, AttentionBuilder] = {
    "none": lambda channels, size, cfg, n_categories: NoAttention(),
    "se": lambda channels, size, cfg, n_categories: SqueezeExcitation(channels, cfg.reduction),
    "channel_spatial": _channel_spatial(),
    "channel": _channel_spatial(use_spatial=False),
    "spatial": _channel_spatial(use_channel=False),
}
