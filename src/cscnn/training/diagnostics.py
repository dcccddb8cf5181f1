"""How much signal the visual backbone passes on: the scale of its last feature map and of its output.

Attention that multiplies a feature map by gates near 0.5, five layers in a row, starves the CNN (docs/
model.md): the last layer's activations shrink and the visual vector is mostly the projection's bias, the
same for every image. `signal_scale` measures both on a fixed probe of catalogue images; training records
it after every epoch (`history[*]["signal"]`), so a run shows whether its CNN is starving.
"""

from __future__ import annotations

import torch

from cscnn.models import CTRModel
from cscnn.models.backbone import VisualBackbone
from cscnn.models.ctr import ImageSource

PROBE_IMAGES = 64


@torch.no_grad()
def signal_scale(model: CTRModel, bank: ImageSource, device: torch.device, n: int = PROBE_IMAGES) -> dict | None:
    """`last_layer`: mean |activation| after the last conv layer's attention; `visual_spread`: the mean over
    visual dimensions of the std across images (what differs between images); `visual_bias`: mean |bias| of
    the projection (what every image gets). None for a model without images."""
    if not isinstance(model.backbone, VisualBackbone):  # no images, or the diagnostic attributes variant
        return None
    was_training = model.training
    model.eval()
    rows = torch.arange(min(n, len(bank)))
    images, categories = bank.fetch(rows)
    seen: dict[str, torch.Tensor] = {}
    hook = model.backbone.attentions[-1].register_forward_hook(lambda m, i, out: seen.update(last=out[0]))
    try:
        visual = model.backbone(images.to(device), categories.to(device))["visual"]
    finally:
        hook.remove()
        model.train(was_training)
    return {
        "last_layer": float(seen["last"].abs().mean()),
        "visual_spread": float(visual.std(dim=0).mean()) if len(visual) > 1 else 0.0,
        "visual_bias": float(model.backbone.project.bias.abs().mean()),
    }
