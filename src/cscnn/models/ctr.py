"""The CTR model: embedded id/context features + a visual vector, through a DCN (cross + deep) network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from cscnn.config import ModelConfig
from cscnn.errors import ConfigError
from cscnn.models.attribute_encoder import AttributeEncoder
from cscnn.models.backbone import VisualBackbone
from cscnn.models.layers import CrossNetwork, mlp, seeded
from cscnn.variants import get_variant


@dataclass
class Batch:
    """Encoded impressions. `item_row` indexes the image bank (the catalogue), not the item-id vocabulary,
    so a cold-start item (unknown id, index 0) still has its image."""

    sparse: torch.Tensor  # [B, n_sparse] int64, 0 = unknown value
    dense: torch.Tensor  # [B, n_dense] float32
    item_row: torch.Tensor  # [B] int64
    label: torch.Tensor | None = None  # [B] float32

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """On `device`; `non_blocking` from pinned memory lets the copy overlap the step running on CUDA."""
        tensors = [self.sparse, self.dense, self.item_row] + ([] if self.label is None else [self.label])
        moved = [t.to(device, non_blocking=non_blocking) for t in tensors]
        return Batch(*moved[:3], moved[3] if self.label is not None else None)

    def pin_memory(self) -> Batch:
        """In page-locked host memory, so that `to(cuda, non_blocking=True)` is asynchronous."""
        tensors = [self.sparse, self.dense, self.item_row] + ([] if self.label is None else [self.label])
        pinned = [t.pin_memory() for t in tensors]
        return Batch(*pinned[:3], pinned[3] if self.label is not None else None)


class ImageSource(Protocol):
    """Where the visual part's input comes from: images (or, for the diagnostic `attributes` variant, true
    attributes) and 1-based categories of catalogue rows (an in-memory `ImageBank`,
    `cscnn.training.features.StoredImages` (the decoded store), `CachedImages` that decodes on demand, or
    `cscnn.training.features.AttributeBank`)."""

    def __len__(self) -> int: ...

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class ImageBank:
    """Every catalogue image, decoded once: uint8 [N, 3, S, S], and its 1-based category index [N]."""

    images: torch.Tensor
    categories: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> ImageBank:
        return ImageBank(self.images.to(device), self.categories.to(device))

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and categories of catalogue `rows`; `cscnn.training.features.CachedImages` does the same by
        decoding on demand."""
        return self.images[rows], self.categories[rows]


# The CNN's batch (a batch's unique images) is padded to a multiple of this by repeating its first image; the
# padding's outputs are dropped. Without it every step allocates differently sized activations and glibc's
# heap fragments: the resident memory of a bench run grew by ~10 MB a step and never came back (2.7 GB after
# 160 steps, 1.0 GB with the padding, at the same speed; benchmarks/train_scaling.py). Each image's vector
# does not depend on the others in its batch (no batch normalisation), so the results are the same. 64, not
# 256: on the 64-day bench world 256 made one epoch 306 s against 250 s (the padded images' backward pass),
# with the same peak memory (1.52 vs 1.55 GB; no padding: 267 s and 4.4 GB).
IMAGE_BUCKET = 64


def pad_to_bucket(rows: torch.Tensor) -> torch.Tensor:
    missing = -len(rows) % IMAGE_BUCKET
    return torch.cat([rows, rows[:1].expand(missing)]) if missing and len(rows) else rows


class CTRModel(nn.Module):
    """One class for every variant of the paper's comparison (the rows of `cscnn.variants.VARIANTS`)."""

    def __init__(
        self, cfg: ModelConfig, vocab_sizes: list[int], n_categories: int, n_dense: int, n_attributes: int = 0
    ) -> None:
        super().__init__()
        self.variant = cfg.variant
        spec = get_variant(cfg.variant)
        self.visual_input = spec.visual_input
        # one draw from the global generator, whatever the variant; each part then has a seed of its own
        base = int(torch.randint(0, 2**31 - 16, ()))
        with seeded(base):
            self.embeddings = nn.ModuleList(nn.Embedding(size + 1, cfg.embed_dim) for size in vocab_sizes)
        self.backbone: VisualBackbone | AttributeEncoder | None = None
        self.fusion: nn.Linear | None = None
        visual_dim = 0
        if spec.uses_images and spec.visual_input == "attributes":
            with seeded(base + 1):
                self.backbone = AttributeEncoder(cfg, n_attributes, n_categories)
            visual_dim = cfg.visual_dim
        elif spec.uses_images:
            self.backbone = VisualBackbone(cfg, n_categories, spec, seed=base + 1)
            visual_dim = cfg.visual_dim
        if spec.pretrain:  # a trainable projection on top of the frozen, pretrained CNN
            with seeded(base + 4):
                self.fusion = nn.Linear(cfg.visual_dim, cfg.visual_dim)
        in_dim = len(vocab_sizes) * cfg.embed_dim + n_dense + visual_dim
        with seeded(base + 5):
            self.cross = CrossNetwork(in_dim, cfg.cross_layers)
            self.deep, deep_dim = mlp(in_dim, cfg.deep_layers, cfg.dropout)
            self.out = nn.Linear(in_dim + deep_dim, 1)

    @property
    def uses_images(self) -> bool:
        return self.backbone is not None

    def freeze_backbone(self) -> None:
        """Late fusion: the CNN is a fixed feature extractor; only the projection and CTR net train."""
        assert self.backbone is not None
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def encode_images(self, images: torch.Tensor, categories: torch.Tensor, return_attention: bool = False) -> dict:
        """Visual vectors of images ([N, 3, S, S] uint8) of 1-based categories; what the lookup table stores."""
        assert self.backbone is not None, f"variant {self.variant!r} has no visual part"
        out = self.backbone(images, categories, return_attention=return_attention)
        if self.fusion is not None:
            out["visual"] = self.fusion(out["visual"])
        return out

    def score(self, sparse: torch.Tensor, dense: torch.Tensor, visual: torch.Tensor | None) -> torch.Tensor:
        """The CTR network alone (what serving runs): logits [B] from features and visual vectors."""
        x0 = self.ctr_input(sparse, dense, visual)
        return self.head(x0, self.deep(x0))

    def ctr_input(self, sparse: torch.Tensor, dense: torch.Tensor, visual: torch.Tensor | None) -> torch.Tensor:
        """x0 of the CTR network: each sparse feature's embedding (in `SPARSE_FEATURES` order), the dense
        features, the visual vector."""
        parts = [emb(sparse[:, i]) for i, emb in enumerate(self.embeddings)]
        parts.append(dense)
        if visual is not None:
            parts.append(visual)
        return torch.cat(parts, dim=1)

    def head(self, x0: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """Logits [B] from x0 and the deep network's output (the ranker computes the latter its own way)."""
        return self.out(torch.cat([self.cross(x0), deep], dim=1)).squeeze(1)

    def visual_for(self, batch: Batch, bank: ImageSource, dedup: bool = True, return_attention: bool = False) -> dict:
        """Visual vectors of a batch's items. With `dedup`, each unique image goes through the CNN once and
        its vector is broadcast to all of its impressions (the seed's batch trick)."""
        if dedup:
            rows, inverse = torch.unique(batch.item_row, return_inverse=True)
        else:
            rows, inverse = batch.item_row, None
        n = len(rows)
        images, categories = bank.fetch(pad_to_bucket(rows))
        out = self.encode_images(images, categories, return_attention)
        out["visual"] = out["visual"][:n] if inverse is None else out["visual"][:n][inverse]
        if return_attention:
            out["attention"] = [{kind: m[:n] for kind, m in layer.items()} for layer in out["attention"]]
        out["unique_images"] = n
        return out

    def forward(
        self, batch: Batch, bank: ImageSource | None = None, dedup: bool = True, return_attention: bool = False
    ) -> dict:
        """Returns `{"logit", "y_pred"}` and, for image variants asked for it, per-layer `attention` maps
        (indexed by the batch's unique images when `dedup`)."""
        out: dict = {}
        visual = None
        if self.uses_images:
            if bank is None:
                raise ConfigError(f"variant {self.variant!r} needs the image bank")
            out = self.visual_for(batch, bank, dedup, return_attention)
            visual = out.pop("visual")
        logit = self.score(batch.sparse, batch.dense, visual)
        out.update(logit=logit, y_pred=torch.sigmoid(logit))
        return out
