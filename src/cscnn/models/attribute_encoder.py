"""The diagnostic `attributes` variant's visual part: the world's true visual attributes in place of the CNN.

It answers how much of the visual signal the CTR network can use when extraction is perfect: the item's
standardised attributes (`cscnn.data.truth`) and a learned category vector go through a small ReLU MLP to a
`visual_dim` vector, the same width the CNN's projection gives the CTR network. The category is an input
because what an attribute means depends on it, as CSCNN's priors let the CNN condition on it. Its visual
share is the ceiling the image variants are measured against (docs/results.md).
"""

from __future__ import annotations

import torch
from torch import nn

from cscnn.config import ModelConfig
from cscnn.errors import DataContractError

HIDDEN = 64
CATEGORY_DIM = 8


class AttributeEncoder(nn.Module):
    """Attributes [N, A] float + 1-based categories [N] -> {"visual": [N, visual_dim]}, like the backbone."""

    def __init__(self, cfg: ModelConfig, n_attributes: int, n_categories: int) -> None:
        super().__init__()
        if n_attributes < 1:
            raise DataContractError("the attributes variant needs at least one true attribute per item")
        self.category = nn.Embedding(n_categories + 1, CATEGORY_DIM)
        self.hidden = nn.Linear(n_attributes + CATEGORY_DIM, HIDDEN)
        self.project = nn.Linear(HIDDEN, cfg.visual_dim)

    def forward(self, attributes: torch.Tensor, category: torch.Tensor, return_attention: bool = False) -> dict:
        x = torch.cat([attributes.to(torch.float32), self.category(category)], dim=1)
        out = {"visual": self.project(torch.relu(self.hidden(x)))}
        if return_attention:
            out["attention"] = []
        return out
