"""Model checkpoints: a folder with the state_dict and a JSON card, keyed by a content fingerprint.

    model.pt    state_dict (loaded back with torch.load(weights_only=True): no pickled code runs)
    model.json  config, feature vocabularies, sizes, data split, fingerprint, metrics

The fingerprint (sha256 over the weights) is the model version that every derived artifact, such as the
embedding table, records, so an artifact can never be paired with the wrong model.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, TypedDict

import torch

from cscnn.config import Config, config_from_dict
from cscnn.errors import CSCNNError, ModelMismatchError
from cscnn.files import atomic_dir, write_json
from cscnn.models import CTRModel
from cscnn.training.features import FeatureEncoder

WEIGHTS_FILE = "model.pt"
CARD_FILE = "model.json"


class CheckpointCard(TypedDict, total=False):
    """The keys of a checkpoint's card (model.json), written once here and read by the training, the daily
    loop's train step, the model registry, the model card and the CLI."""

    fingerprint: str  # sha256 over the weights: the model version every derived artifact records
    variant: str
    config: dict[str, Any]  # `Config.to_dict()`
    encoder: dict[str, Any]  # `FeatureEncoder.to_dict()`: vocabularies, categories, attributes
    world: str  # the world folder it trained on
    days: dict[str, list[str]]  # the split: train, val, test days
    best_epoch: int
    val_auc: float
    history: list[dict[str, Any]]  # per epoch: train loss, validation AUC
    signal_at_start: dict[str, Any] | None  # `diagnostics.signal_scale` before the first step
    train_seconds: float
    workers: int  # data-parallel workers it trained with


def fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def build_model(cfg: Config, encoder: FeatureEncoder) -> CTRModel:
    from cscnn.data import schema

    return CTRModel(
        cfg.model, encoder.vocab_sizes, len(encoder.categories), len(schema.DENSE_FEATURES), len(encoder.attributes)
    )


def save_checkpoint(out: Path, model: CTRModel, encoder: FeatureEncoder, cfg: Config, extra: dict) -> CheckpointCard:
    """Write the checkpoint folder atomically; returns its card."""
    card: CheckpointCard = {
        "fingerprint": fingerprint(model),
        "variant": cfg.model.variant,
        "config": cfg.to_dict(),
        "encoder": encoder.to_dict(),
        **extra,
    }
    with atomic_dir(Path(out)) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp / WEIGHTS_FILE)
        write_json(tmp / CARD_FILE, card)
    return card


def read_card(path: Path) -> CheckpointCard:
    """The card of a checkpoint folder, without loading the weights."""
    card = Path(path) / CARD_FILE
    if not card.is_file():
        raise CSCNNError(f"{path}: not a model checkpoint (no {CARD_FILE}; train one with `cscnn train`)")
    return json.loads(card.read_text())


def load_checkpoint(path: Path) -> tuple[CTRModel, FeatureEncoder, Config, CheckpointCard]:
    path = Path(path)
    if not (path / WEIGHTS_FILE).is_file() or not (path / CARD_FILE).is_file():
        raise CSCNNError(
            f"{path}: not a model checkpoint (expected {WEIGHTS_FILE} and {CARD_FILE}; train one with `cscnn train`)"
        )
    try:
        card = json.loads((path / CARD_FILE).read_text())
        cfg = config_from_dict(card["config"])
        encoder = FeatureEncoder.from_dict(card["encoder"])
        model = build_model(cfg, encoder)
        model.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    except (ValueError, KeyError, RuntimeError, CSCNNError, pickle.UnpicklingError) as exc:
        # json, a missing card key, a config error, a torch shape mismatch or a corrupt weights file
        raise CSCNNError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    model.eval()
    if fingerprint(model) != card["fingerprint"]:
        raise ModelMismatchError(f"{path}: weights do not match the fingerprint in {CARD_FILE} (file replaced?)")
    return model, encoder, cfg, card
