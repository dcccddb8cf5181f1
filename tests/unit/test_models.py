"""Model contract: shapes for every variant, category-aware attention, the dedup trick, save/load."""

from __future__ import annotations

import pytest
import torch

from cscnn.config import load_config
from cscnn.data import schema
from cscnn.models import Batch, ImageBank
from cscnn.training.checkpoint import build_model, load_checkpoint, save_checkpoint
from cscnn.training.features import FeatureEncoder
from cscnn.variants import VARIANTS

N_IMAGES, BATCH = 6, 16


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def tiny_config(variant: str):
    return load_config("tiny", overrides=[f"model.variant={variant}"])


def toy_encoder() -> FeatureEncoder:
    vocabs = {name: [f"{name}{i}" for i in range(5)] for name in schema.SPARSE_FEATURES}
    return FeatureEncoder(vocabs=vocabs, categories=["c0", "c1", "c2"])


def toy_inputs(image_size: int, seed: int = 0) -> tuple[Batch, ImageBank]:
    gen = torch.Generator().manual_seed(seed)
    bank = ImageBank(
        images=torch.randint(0, 256, (N_IMAGES, 3, image_size, image_size), dtype=torch.uint8, generator=gen),
        categories=torch.tensor([1, 2, 3, 1, 2, 0]),  # 0: a category unseen in training
    )
    batch = Batch(
        sparse=torch.randint(0, 6, (BATCH, len(schema.SPARSE_FEATURES)), generator=gen),
        dense=torch.randn(BATCH, len(schema.DENSE_FEATURES), generator=gen),
        item_row=torch.randint(0, N_IMAGES, (BATCH,), generator=gen),  # many impressions per image
        label=torch.randint(0, 2, (BATCH,), generator=gen).float(),
    )
    return batch, bank


IMAGE_INPUT = [name for name, v in VARIANTS.items() if not v.diagnostic]  # the attributes variant: test_ceiling


@pytest.mark.parametrize("variant", IMAGE_INPUT)
def test_forward_shapes_and_attention_maps(variant: str) -> None:
    cfg = tiny_config(variant)
    model = build_model(cfg, toy_encoder())
    batch, bank = toy_inputs(cfg.model.image_size)
    out = model(batch, bank, return_attention=True)
    assert out["logit"].shape == (BATCH,)
    assert torch.all((out["y_pred"] > 0) & (out["y_pred"] < 1))
    if not VARIANTS[variant].uses_images:
        assert "attention" not in out
        return
    maps = out["attention"]
    assert len(maps) == 5  # one per conv layer
    n_unique = len(batch.item_row.unique())
    first = cfg.model.image_size // cfg.model.stem_stride
    sizes = [first, first // 2, first // 4, first // 4, first // 4]
    for layer, size, channels in zip(maps, sizes, cfg.model.conv_channels, strict=True):
        assert set(layer) <= {"channel", "spatial"}
        assert bool(layer) == (VARIANTS[variant].attention != "none")
        if "channel" in layer:
            assert layer["channel"].shape == (n_unique, channels)
        if "spatial" in layer:
            assert layer["spatial"].shape == (n_unique, size, size)


def test_cscnn_attention_depends_on_category(tiny_with) -> None:
    # Wide enough that the attention MLP (hidden = channels / reduction) is not a couple of dead ReLUs.
    cfg = tiny_with("model.variant=cscnn", "model.conv_channels=[16,16,16,16,16]", "model.reduction=2")
    model = build_model(cfg, toy_encoder()).eval()
    _, bank = toy_inputs(cfg.model.image_size)
    image = bank.images[:1].repeat(3, 1, 1, 1)  # one image, three categories
    out = model.encode_images(image, torch.tensor([1, 2, 3]), return_attention=True)
    for layer in out["attention"]:
        for kind in ("channel", "spatial"):
            assert not torch.allclose(layer[kind][0], layer[kind][1])
            assert not torch.allclose(layer[kind][1], layer[kind][2])
    assert not torch.allclose(out["visual"][0], out["visual"][1])


@pytest.mark.parametrize("variant", ["se", "cbam"])
def test_category_blind_attention_ignores_category(variant: str) -> None:
    cfg = tiny_config(variant)
    model = build_model(cfg, toy_encoder()).eval()
    _, bank = toy_inputs(cfg.model.image_size)
    image = bank.images[:1].repeat(2, 1, 1, 1)
    out = model.encode_images(image, torch.tensor([1, 2]))
    torch.testing.assert_close(out["visual"][0], out["visual"][1])


def test_unseen_category_uses_mean_prior() -> None:
    """Category 0 (never seen in training) must behave exactly like a category whose priors are the mean."""
    cfg = tiny_config("cscnn")
    model = build_model(cfg, toy_encoder()).eval()
    _, bank = toy_inputs(cfg.model.image_size)
    image = bank.images[:1]
    with torch.no_grad():
        unseen = model.encode_images(image, torch.tensor([0]))["visual"]
        for attention in model.backbone.attentions:
            for part in (attention.channel, attention.spatial):
                part.prior.copy_(part.prior.mean(dim=0, keepdim=True).expand_as(part.prior))
        averaged = model.encode_images(image, torch.tensor([2]))["visual"]
    torch.testing.assert_close(unseen, averaged)


@pytest.mark.parametrize("variant", ["cnn", "cscnn", "late_fusion", "attributes", "cscnn+group_norm"])
def test_dedup_gives_same_loss_and_gradients(tiny_with, variant: str) -> None:
    """GroupNorm (`model.conv_norm=group`) normalises each image by its own statistics: dedup stays exact."""
    variant, _, norm = variant.partition("+")
    cfg = tiny_with(*[f"model.variant={variant}"] + (["model.conv_norm=group"] if norm else []))
    if variant == "attributes":
        return _dedup_check_attributes(cfg)
    model = build_model(cfg, toy_encoder())
    model.eval()  # no dropout noise between the two passes
    batch, bank = toy_inputs(cfg.model.image_size)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def loss_and_grads(dedup: bool):
        model.zero_grad()
        out = model(batch, bank, dedup=dedup)
        loss = loss_fn(out["logit"], batch.label)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, out["unique_images"]

    loss_d, grads_d, n_dedup = loss_and_grads(True)
    loss_p, grads_p, n_plain = loss_and_grads(False)
    assert n_dedup == len(batch.item_row.unique()) < n_plain == BATCH
    torch.testing.assert_close(loss_d, loss_p)
    assert grads_d.keys() == grads_p.keys()
    assert any(name.startswith("backbone") for name in grads_d) or variant == "late_fusion"
    for name in grads_d:
        torch.testing.assert_close(grads_d[name], grads_p[name], rtol=1e-4, atol=1e-6, msg=name)


def _dedup_check_attributes(cfg) -> None:
    encoder = toy_encoder()
    encoder.attributes = ["a", "b", "c"]
    model = build_model(cfg, encoder).eval()
    batch, _ = toy_inputs(cfg.model.image_size)
    bank = ImageBank(images=torch.randn(N_IMAGES, 3), categories=torch.tensor([1, 2, 3, 1, 2, 0]))
    outputs = [model(batch, bank, dedup=dedup)["logit"] for dedup in (True, False)]
    torch.testing.assert_close(outputs[0], outputs[1])


@pytest.mark.parametrize("variant", ["no_image", "cscnn", "se"])
def test_save_load_gives_identical_scores(variant: str, tmp_path) -> None:
    cfg = tiny_config(variant)
    encoder = toy_encoder()
    model = build_model(cfg, encoder).eval()
    batch, bank = toy_inputs(cfg.model.image_size)
    before = model(batch, bank)["y_pred"]
    card = save_checkpoint(tmp_path / "ckpt", model, encoder, cfg, extra={})
    loaded, loaded_encoder, loaded_cfg, loaded_card = load_checkpoint(tmp_path / "ckpt")
    assert loaded_card["fingerprint"] == card["fingerprint"]
    assert loaded_encoder == encoder and loaded_cfg == cfg
    torch.testing.assert_close(loaded(batch, bank)["y_pred"], before, rtol=0, atol=0)


def test_tampered_checkpoint_is_refused(tmp_path) -> None:
    from cscnn.errors import ModelMismatchError

    cfg = tiny_config("cscnn")
    encoder = toy_encoder()
    model = build_model(cfg, encoder)
    save_checkpoint(tmp_path / "a", model, encoder, cfg, extra={})
    other = build_model(cfg, encoder)
    torch.save(other.state_dict(), tmp_path / "a" / "model.pt")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        load_checkpoint(tmp_path / "a")


def test_a_new_variant_is_one_row_plus_its_attention_module(tiny_with, monkeypatch, tiny_world) -> None:
    """docs/architecture.md's walk-through: a row in cscnn.variants and, for a new kind of attention, its module
    in models.attention.ATTENTIONS; the config, the model and training take it with no other change."""
    from cscnn import variants
    from cscnn.data.io import open_world
    from cscnn.models import attention
    from cscnn.training.train import train

    class GlobalGain(torch.nn.Module):
        """One learned gain per channel: the smallest attention there is."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(channels))

        def forward(self, x, category):
            return x * self.gain[None, :, None, None], {"channel": self.gain.expand(len(x), -1)}

    monkeypatch.setitem(attention.ATTENTIONS, "gain", lambda channels, size, cfg, n_categories: GlobalGain(channels))
    monkeypatch.setitem(variants.VARIANTS, "gain", variants.Variant("gain", "per-channel gain", attention="gain"))
    cfg = tiny_with("model.variant=gain", "train.epochs=1")
    result = train(open_world(tiny_world), cfg, progress=False)
    assert all(isinstance(a, GlobalGain) for a in result.model.backbone.attentions)
    assert result.history[0]["val_auc"] > 0
