"""Building blocks of the DCN-style CTR network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class CrossNetwork(nn.Module):
    """DCN cross layers (Wang et al. 2017): `x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l`."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(dim) * (1.0 / dim**0.5)) for _ in range(n_layers)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(dim)) for _ in range(n_layers)])

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.weights, self.biases, strict=True):
            x = x0 * (x @ w).unsqueeze(1) + b + x
        return x


def mlp(in_dim: int, hidden: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    """ReLU MLP; returns the module and its output width."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers), in_dim


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build modules from their own seed, leaving the global generator as it was.

    Each part of the model (id embeddings, convolutions, attention, projection, CTR network) is drawn from a
    seed of its own, so variants that share a part start it from the same weights: `cnn` and `cscnn` differ
    at initialisation only in the attention modules, and a paired comparison measures the attention.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
