"""Attention modules applied after every convolutional layer of the visual backbone.

All share one call signature, `module(features, category) -> (features, maps)`, so the backbone does not
care which one it holds. `maps` holds the multipliers applied to the features (`channel`: [N, C],
`spatial`: [N, H, W]) for inspection; only category-aware modules use `category`. `ATTENTIONS` at the end
names each kind for the variant table (`cscnn.variants`).

How a map reweights its features is `model.attention_gate` (`GATES`), the same for SE, CBAM and CSCNN so
that the comparison stays fair; docs/model.md has the measurements behind the default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cscnn.config import ModelConfig
from cscnn.models.spatial_conv import SpatialConv

Maps = dict[str, torch.Tensor]
Gate = Callable[[torch.Tensor], torch.Tensor]

# attention logits -> the multiplier of the features. sigmoid: the papers' F * sigmoid(M), 0.5 at the start,
# so five layers in a row shrink the signal ~32x. scaled: F * 2 sigmoid(M), the identity at M = 0 and free
# to go from 0 to 2x. residual: F + F * sigmoid(M), never below F (the identity path always open).
GATES: dict[str, Gate] = {
    "sigmoid": torch.sigmoid,
    "scaled": lambda logits: 2.0 * torch.sigmoid(logits),
    "residual": lambda logits: 1.0 + torch.sigmoid(logits),
}


class NoAttention(nn.Module):
    def forward(self, x: torch.Tensor, category: torch.Tensor) -> tuple[torch.Tensor, Maps]:
        return x, {}


def _spatial_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over H, W: [N, C, H, W] -> [N, C]. Means are taken as sum x (1/n) on the small result: the
    backward pass of `mean` divides the full-size gradient, one more pass over every feature map."""
    return x.sum(dim=(2, 3))


class SqueezeExcitation(nn.Module):
    """SE (Hu et al. 2018): channel weights from global average pooling; not category-aware."""

    def __init__(self, channels: int, reduction: int, gate: Gate) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.gate = gate

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> tuple[torch.Tensor, Maps]:
        pooled = _spatial_sum(x) * (1.0 / (x.shape[2] * x.shape[3]))
        weights = self.gate(self.mlp(pooled))
        return x * weights[:, :, None, None], {"channel": weights}


def _category_prior(prior: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """Rows of `prior` ([n_categories, ...]) for 1-based `category`; index 0 (unseen) gets their mean.

    The mean prior is the documented fallback for a category the model never saw in training.
    """
    table = torch.cat([prior.mean(dim=0, keepdim=True), prior], dim=0)
    return table.index_select(0, category)  # backward: index_add_, not indexing's slower index_put_


def _prior(n_categories: int, size: int, std: float) -> nn.Parameter | None:
    """Category priors start as N(0, std^2), like embedding rows (`model.prior_init_std`): a near-zero start
    makes every category look alike to the attention until training has pulled them apart."""
    return nn.Parameter(torch.randn(n_categories, size) * std) if n_categories else None


class ChannelAttention(nn.Module):
    """`Mc(F, k) = gate(MLP([AvgPool(F); Ac_k]) + MLP([MaxPool(F); Ac_k]))` with a shared MLP.

    With `n_categories == 0` it is CBAM's channel attention (no prior).
    """

    def __init__(
        self, channels: int, reduction: int, gate: Gate, n_categories: int = 0, prior_dim: int = 0, prior_std=1.0
    ) -> None:
        super().__init__()
        self.prior = _prior(n_categories, prior_dim, prior_std)
        in_dim = channels + (prior_dim if n_categories else 0)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.gate = gate

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        # max_pool/max keep the argmax for backward; amax's backward (tie-splitting) is several times slower.
        avg = _spatial_sum(x) * (1.0 / (x.shape[2] * x.shape[3]))
        pooled = torch.cat([avg, nn.functional.adaptive_max_pool2d(x, 1).flatten(1)])  # one MLP call, [2N, C]
        if self.prior is not None:
            prior = _category_prior(self.prior, category)
            pooled = torch.cat([pooled, prior.repeat(2, 1)], dim=1)
        logits = self.mlp(pooled)
        return self.gate(logits[: len(x)] + logits[len(x) :])


class SpatialAttention(nn.Module):
    """`Ms(F', k) = gate(conv([mean_c(F'); max_c(F'); As_k]))`, `As_k` a learned HxW map per category.

    With `n_categories == 0` it is CBAM's spatial attention (no prior map).
    """

    def __init__(
        self, height: int, width: int, kernel: int, gate: Gate, n_categories: int = 0, prior_std: float = 1.0
    ) -> None:
        super().__init__()
        self.shape = (height, width)
        self.prior = _prior(n_categories, height * width, prior_std)
        in_channels = 3 if n_categories else 2
        self.conv = SpatialConv(in_channels, kernel, height, width)
        self.gate = gate

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        parts = [x.sum(dim=1, keepdim=True) * (1.0 / x.shape[1]), x.max(dim=1, keepdim=True).values]
        if self.prior is not None:
            parts.append(_category_prior(self.prior, category).view(-1, 1, *self.shape))
        return self.gate(self.conv(torch.cat(parts, dim=1))).squeeze(1)


class ChannelSpatialAttention(nn.Module):
    """`F' = Mc ⊙ F`, then `F'' = Ms ⊙ F'`: CBAM when not category-aware, CSCNN when it is.

    Either half can be switched off for the channel-only / spatial-only ablations.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        cfg: ModelConfig,
        n_categories: int = 0,
        use_channel: bool = True,
        use_spatial: bool = True,
    ) -> None:
        super().__init__()
        gate, std = GATES[cfg.attention_gate], cfg.prior_init_std
        self.channel = (
            ChannelAttention(channels, cfg.reduction, gate, n_categories, cfg.channel_prior_dim, std)
            if use_channel
            else None
        )
        self.spatial = (
            SpatialAttention(size, size, cfg.spatial_kernel, gate, n_categories, std) if use_spatial else None
        )

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
        return ChannelSpatialAttention(channels, size, cfg, n_categories, use_channel, use_spatial)

    return build


ATTENTIONS: dict[str, AttentionBuilder] = {
    "none": lambda channels, size, cfg, n_categories: NoAttention(),
    "se": lambda channels, size, cfg, n_categories: SqueezeExcitation(
        channels, cfg.reduction, GATES[cfg.attention_gate]
    ),
    "channel_spatial": _channel_spatial(),
    "channel": _channel_spatial(use_spatial=False),
    "spatial": _channel_spatial(use_channel=False),
}
