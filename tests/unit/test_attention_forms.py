"""The attention forms (`model.attention_gate`), the initialisation options, the spatial convolution as a
matrix product, shared initialisation across variants, the learning-rate warm-up and the allocator tuning."""

from __future__ import annotations

import pytest
import torch
from test_models import BATCH, toy_encoder, toy_inputs

from cscnn.config import load_config
from cscnn.errors import ConfigError
from cscnn.models.attention import GATES
from cscnn.models.spatial_conv import SpatialConv
from cscnn.training.allocator import reuse_freed_memory
from cscnn.training.checkpoint import build_model

FORMS = list(GATES)


def config(variant: str, *overrides: str):
    return load_config("tiny", overrides=[f"model.variant={variant}", *overrides])


@pytest.mark.parametrize("gate", FORMS)
@pytest.mark.parametrize("variant", ["se", "cbam", "cscnn"])
def test_every_form_keeps_shapes_and_the_dedup_equivalence(variant: str, gate: str) -> None:
    torch.manual_seed(0)
    cfg = config(variant, f"model.attention_gate={gate}", "model.conv_init=kaiming")
    model = build_model(cfg, toy_encoder()).eval()
    batch, bank = toy_inputs(cfg.model.image_size)

    def loss_and_grads(dedup: bool):
        model.zero_grad()
        out = model(batch, bank, dedup=dedup, return_attention=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out["logit"], batch.label)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, out

    loss_d, grads_d, out = loss_and_grads(True)
    loss_p, grads_p, _ = loss_and_grads(False)
    assert out["logit"].shape == (BATCH,)
    assert len(out["attention"]) == 5
    torch.testing.assert_close(loss_d, loss_p)
    assert grads_d.keys() == grads_p.keys()
    for name in grads_d:  # gradients reach thousands under the residual gate: tolerances relative to their size
        atol = 1e-6 * max(1.0, float(grads_p[name].abs().max()))
        torch.testing.assert_close(grads_d[name], grads_p[name], rtol=1e-4, atol=atol, msg=name)
    low, high = {"sigmoid": (0, 1), "scaled": (0, 2), "residual": (1, 2)}[gate]
    for layer in out["attention"]:
        for weights in layer.values():
            assert low <= float(weights.detach().min()) and float(weights.detach().max()) <= high


def test_gates_at_zero_logits() -> None:
    zero = torch.zeros(3)
    torch.testing.assert_close(GATES["sigmoid"](zero), torch.full((3,), 0.5))
    torch.testing.assert_close(GATES["scaled"](zero), torch.ones(3))  # the identity: nothing starves
    torch.testing.assert_close(GATES["residual"](zero), torch.full((3,), 1.5))


@pytest.mark.parametrize("size", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("channels", [2, 3])
def test_spatial_conv_is_the_convolution(size: int, channels: int) -> None:
    """Same outputs and gradients as nn.Conv2d with padding k//2, for the matrix path (<= 16 x 16) and the
    convolution path (32 x 32)."""
    torch.manual_seed(size)
    conv = SpatialConv(channels, 7, size, size)
    reference = torch.nn.Conv2d(channels, 1, 7, padding=3)
    reference.load_state_dict(conv.state_dict())
    assert (conv.matrix_index is None) == (size * size > 256)
    x = torch.randn(5, channels, size, size, requires_grad=True)
    grad = torch.randn(5, 1, size, size)
    out = conv(x)
    out.backward(grad)
    grads = (x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone())
    x.grad = None
    expected = reference(x)
    expected.backward(grad)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, (x.grad, reference.weight.grad, reference.bias.grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_variants_share_the_modules_they_have_in_common() -> None:
    """With the same seed, cnn and cscnn start from the same convolutions, projection, id embeddings and CTR
    network: they differ only in the attention modules."""
    models = {}
    for variant in ("cnn", "cscnn", "se"):
        torch.manual_seed(7)
        models[variant] = build_model(config(variant), toy_encoder()).state_dict()
    shared = [k for k in models["cnn"] if not k.startswith("backbone.attentions")]
    assert any(k.startswith("backbone.convs") for k in shared) and any(k.startswith("deep") for k in shared)
    for variant in ("cscnn", "se"):
        for key in shared:
            torch.testing.assert_close(models[variant][key], models["cnn"][key], msg=key)
    torch.manual_seed(8)
    other_seed = build_model(config("cnn"), toy_encoder()).state_dict()
    assert not torch.equal(other_seed["backbone.convs.0.weight"], models["cnn"]["backbone.convs.0.weight"])


def _last_layer_scale(cfg) -> float:
    torch.manual_seed(0)
    model = build_model(cfg, toy_encoder()).eval()
    _, bank = toy_inputs(cfg.model.image_size)
    seen = {}
    model.backbone.attentions[-1].register_forward_hook(lambda m, i, out: seen.update(x=out[0]))
    with torch.no_grad():
        model.encode_images(bank.images, bank.categories)
    return float(seen["x"].abs().mean())


def test_identity_preserving_forms_and_init_keep_the_signal() -> None:
    """The measured problem behind the options: sigmoid gates and PyTorch's default init shrink the last
    layer's activations; scaled gates and He init keep them (docs/model.md has the small-profile numbers)."""
    widths = "model.conv_channels=[16,16,16,16,16]"
    sigmoid_default = _last_layer_scale(config("cscnn", widths, "model.attention_gate=sigmoid"))
    scaled_default = _last_layer_scale(config("cscnn", widths, "model.attention_gate=scaled"))
    scaled_kaiming = _last_layer_scale(
        config("cscnn", widths, "model.attention_gate=scaled", "model.conv_init=kaiming")
    )
    assert scaled_default > 4 * sigmoid_default
    assert scaled_kaiming > 4 * scaled_default


def test_prior_init_std_scales_the_priors() -> None:
    torch.manual_seed(0)
    model = build_model(config("cscnn", "model.prior_init_std=0.01"), toy_encoder())
    priors = [a.channel.prior for a in model.backbone.attentions] + [a.spatial.prior for a in model.backbone.attentions]
    assert max(float(p.detach().abs().max()) for p in priors) < 0.1


@pytest.mark.parametrize(
    "override",
    ["model.attention_gate=softmax", "model.conv_init=xavier", "model.prior_init_std=0", "train.warmup_steps=-1"],
)
def test_bad_attention_settings_name_the_setting(tiny_with, override: str) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[1]):
        tiny_with(override)


def test_allocator_tuning_is_applied_on_glibc_linux() -> None:
    import platform

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert reuse_freed_memory() is expected
