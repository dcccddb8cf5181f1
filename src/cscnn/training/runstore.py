"""The finished runs of a comparison on disk, so that an interrupted `cscnn compare` resumes where it stopped.

A run is kept as two files in the runs folder: `<variant>-s<seed>-<key>.npz` (its per-row test predictions,
with the labels, categories and cold-start flags they belong to) and `<variant>-s<seed>-<key>.json` (its
metrics, the fingerprint it was made under and the SHA-256 of the .npz). The key is a hash of everything
that determines the run: the world's data (content of the tables and images a run reads), the model and
training config except variant and seed, the variant, the seed, the device type, the torch version and the
source of the code that trains and scores a model. A changed config gives a new key: old runs stay on disk
and are ignored. Both files are written atomically, the .json last: a run killed mid-write leaves no .json
that could be trusted, and a .json whose .npz is missing, changed or unreadable is not trusted either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import torch

from cscnn import variants as variants_module
from cscnn.config import Config
from cscnn.data import schema, truth
from cscnn.data.io import World
from cscnn.files import atomic_file, write_json
from cscnn.models import attention, attribute_encoder, backbone, ctr, layers, spatial_conv
from cscnn.training import checkpoint, features, metrics, probe, recipe, scoring, stream, train

ARRAYS = ("label", "prob", "category", "cold")
KEY_LENGTH = 16
# The code a run's result depends on: a change to any of these makes every stored run stale.
RUN_CODE = (
    variants_module,
    attention,
    attribute_encoder,
    backbone,
    ctr,
    layers,
    spatial_conv,
    checkpoint,
    features,
    metrics,
    probe,
    recipe,
    scoring,
    stream,
    train,
    truth,
)


def _file_digest(path: Path, digest: hashlib._Hash) -> None:
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)


def world_identity(world: World) -> str:
    """SHA-256 of the data a run reads: items, users, every day of impressions and every item's image, by
    content and by path relative to the world (a copied world has the same identity; `truth/` is not read)."""
    digest = hashlib.sha256()
    files = [schema.ITEMS_FILE, schema.USERS_FILE]
    files += [str(schema.impressions_path(Path(), day)) for day in world.days]
    files += [f"{schema.IMAGES_DIR}/{name}" for name in sorted(set(world.items["image"]))]
    for name in files:
        digest.update(name.encode() + b"\0")
        path = world.root / name
        if path.is_file():
            _file_digest(path, digest)
        else:
            digest.update(b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def code_identity() -> str:
    digest = hashlib.sha256()
    for module in RUN_CODE:
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):  # no source shipped: the names the module defines
            source = repr(sorted(vars(module)))
        digest.update(module.__name__.encode() + b"\0" + source.encode() + b"\0")
    return digest.hexdigest()[:16]


def shared_fingerprint(world: World, cfg: Config, device: torch.device) -> dict:
    """What every run of one comparison shares: all but the variant and the seed."""
    model, train_cfg = dataclasses.asdict(cfg.model), dataclasses.asdict(cfg.train)
    model.pop("variant")
    train_cfg.pop("seed")
    return {
        "world": world_identity(world),
        "config": {"model": model, "train": train_cfg},
        "device_type": device.type,
        "torch": torch.__version__,
        "code": code_identity(),
    }


def run_fingerprint(shared: dict, variant: str, seed: int) -> dict:
    return {**shared, "variant": variant, "seed": seed}


def run_key(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:KEY_LENGTH]


def run_stem(variant: str, seed: int, key: str) -> str:
    return f"{variant}-s{seed}-{key}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _file_digest(path, digest)
    return digest.hexdigest()


def save_run(folder: Path, fingerprint: dict, row: dict, scores: dict[str, np.ndarray]) -> Path:
    """Write one finished run (predictions first, then the record that vouches for them); returns the .json."""
    key = run_key(fingerprint)
    stem = run_stem(fingerprint["variant"], fingerprint["seed"], key)
    npz, record = Path(folder) / f"{stem}.npz", Path(folder) / f"{stem}.json"
    with atomic_file(npz) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(  # committed with the results: ~4x smaller
            handle,
            label=np.asarray(scores["label"], dtype=np.int8),
            prob=np.asarray(scores["prob"], dtype=np.float32),
            category=np.asarray(scores["category"], dtype=str),
            cold=np.asarray(scores["cold"], dtype=bool),
        )
    write_json(record, {"key": key, "fingerprint": fingerprint, "npz_sha256": _sha256(npz), "row": row})
    return record


def load_run(folder: Path, fingerprint: dict) -> tuple[dict, dict[str, np.ndarray]] | None:
    """The stored run for `fingerprint` (its row and its arrays), or None when there is none to trust."""
    key = run_key(fingerprint)
    stem = run_stem(fingerprint["variant"], fingerprint["seed"], key)
    npz, record_path = Path(folder) / f"{stem}.npz", Path(folder) / f"{stem}.json"
    try:
        record = json.loads(record_path.read_text())
        if record["key"] != key or record["fingerprint"] != fingerprint or _sha256(npz) != record["npz_sha256"]:
            return None
        with np.load(npz, allow_pickle=False) as data:
            scores = {name: data[name] for name in ARRAYS}
    except (OSError, ValueError, KeyError, TypeError, EOFError):  # missing, partial or corrupted files
        return None
    if len({len(a) for a in scores.values()}) != 1 or not isinstance(record.get("row"), dict):
        return None
    scores["label"] = scores["label"].astype(np.int64)
    return record["row"], scores


def stale_differences(folder: Path, fingerprint: dict) -> list[str]:
    """Why other stored runs of this variant and seed do not count: the parts of their fingerprint that differ
    (for the message of a run that is trained again)."""
    found: set[str] = set()
    for path in sorted(Path(folder).glob(f"{run_stem(fingerprint['variant'], fingerprint['seed'], '*')}.json")):
        try:
            old = json.loads(path.read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if old == fingerprint:
            continue
        for part in sorted(set(old) | set(fingerprint)):
            if part == "config":
                for section in ("model", "train"):
                    new_s, old_s = fingerprint["config"][section], old.get("config", {}).get(section, {})
                    found |= {f"{section}.{k}" for k in set(new_s) | set(old_s) if new_s.get(k) != old_s.get(k)}
            elif old.get(part) != fingerprint.get(part):
                found.add(part)
    return sorted(found)
