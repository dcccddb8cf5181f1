"""The model variants of the paper's comparison, one row each (standard library only).

The backbone builds its attention from `attention` and `category_aware`, training reads `uses_images`,
`visual_input` and `pretrain`, `cscnn compare` and the config's checks read the names. Adding a variant is one
row here, plus its attention module in `cscnn.models.attention` (registered in `ATTENTIONS` there) when it
needs a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cscnn.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    uses_images: bool = True  # False: the CTR network over ids and context only
    attention: str = "none"  # a key of cscnn.models.attention.ATTENTIONS, applied after every conv layer
    category_aware: bool = False  # the attention gets per-category priors (CSCNN)
    pretrain: bool = False  # late fusion: pretrain the CNN on the items' categories, then freeze it
    # image: the CNN over the item's image; attributes: the world's true visual attributes (truth/attributes.
    # parquet) through a small MLP, a diagnostic ceiling that cannot be served (no real item has them)
    visual_input: str = "image"

    @property
    def diagnostic(self) -> bool:
        return self.uses_images and self.visual_input != "image"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("no_image", "CTR network over ids/context only", uses_images=False),
        Variant(
            "attributes",
            "diagnostic ceiling: the world's true visual attributes in place of the image (no CNN)",
            visual_input="attributes",
        ),
        Variant(
            "late_fusion", "frozen CNN (pretrained on category classification) + trainable projection", pretrain=True
        ),
        Variant("cnn", "end-to-end CNN, no attention"),
        Variant("se", "end-to-end CNN, squeeze-and-excitation after every conv", attention="se"),
        Variant("cbam", "end-to-end CNN, CBAM after every conv", attention="channel_spatial"),
        Variant(
            "cscnn",
            "category-specific channel + spatial attention after every conv",
            attention="channel_spatial",
            category_aware=True,
        ),
        Variant(
            "cscnn_channel",
            "ablation: category-specific channel attention only",
            attention="channel",
            category_aware=True,
        ),
        Variant(
            "cscnn_spatial",
            "ablation: category-specific spatial attention only",
            attention="spatial",
            category_aware=True,
        ),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"model.variant={name!r}: choose one of {list(VARIANTS)}") from None


def check_servable(name: str) -> None:
    """The daily loop serves what it trains: a diagnostic variant (it reads the world's true attributes, which
    no served ad has) is refused before any step runs."""
    if get_variant(name).diagnostic:
        raise ConfigError(
            f"model.variant={name!r} is a diagnostic for `cscnn compare`; the daily loop serves its model, so "
            "train an image variant (e.g. cscnn) or no_image"
        )
