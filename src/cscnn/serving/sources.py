"""Where the serving model versions come from: the MLflow registry or local folders, chosen by environment.

A `ModelSource` names the version that should serve now (cheap; `cscnn.serving.hotswap` polls it) and loads a
version into a `Ranker` (slow; only when the name changes).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cscnn import settings
from cscnn.config import ServeConfig, load_config
from cscnn.errors import CSCNNError
from cscnn.files import UnsafeNameError, flat_name
from cscnn.serving.schemas import ServedModel
from cscnn.settings import DEFAULT_PROFILE
from cscnn.state import State

if TYPE_CHECKING:  # torch comes with the first model (`load`), not with this module (`bentoml build` skips it)
    from cscnn.serving.ranker import Ranker

# A table tag becomes a cache folder and an artifact path (`cscnn.tools.model_registry.fetch`): plain names only.
UnsafeTagError = UnsafeNameError
cache_key = flat_name


class ModelSource(Protocol):
    """Names the version that should serve now (cheap, polled) and loads a version (slow, on change)."""

    def resolve(self) -> ServedModel | None: ...

    def load(self, target: ServedModel) -> Ranker: ...


@dataclass
class RegistrySource:
    """The MLflow registry: the version an alias names (default `champion`), or one pinned version."""

    alias: str = "champion"
    version: str | None = None
    name: str | None = None
    state: State | None = None

    def resolve(self) -> ServedModel | None:
        from cscnn.tools import model_registry

        ref = model_registry.get_version(self.version, self.state, self.name) if self.version else None
        ref = ref or model_registry.resolve(self.alias, self.state, self.name)
        if ref is None:
            return None
        return ServedModel(name=ref.name, version=ref.version, fingerprint=ref.fingerprint, embeddings=ref.embeddings)

    def load(self, target: ServedModel) -> Ranker:
        from cscnn.tools import model_registry

        ref = model_registry.get_version(target.version, self.state, target.name)
        if ref.embeddings is not None:
            cache_key(ref.embeddings)  # the registry's fetch makes a cache path and an artifact path of it
        if ref.embeddings != target.embeddings:
            raise CSCNNError(f"version {target.version} changed its table while loading; retrying on the next poll")
        checkpoint_dir, table_dir = model_registry.fetch(ref, self.state)
        from cscnn.serving.ranker import load_ranker

        return load_ranker(checkpoint_dir, table_dir, target)


@dataclass
class LocalSource:
    """Folders on disk (a checkpoint and its table): `make serve` without a registry, tests, the benchmark.

    The version is the checkpoint's fingerprint, so replacing the folders (atomically) is picked up by a poll.
    """

    checkpoint_dir: Path
    table_dir: Path
    catalog: Path | None = None
    images_dir: Path | None = None

    def resolve(self) -> ServedModel | None:
        import json

        from cscnn.training.checkpoint import CARD_FILE

        card_file = Path(self.checkpoint_dir) / CARD_FILE
        if not card_file.is_file():
            return None
        fingerprint = json.loads(card_file.read_text())["fingerprint"]
        return ServedModel(name="local", version=fingerprint, fingerprint=fingerprint, embeddings=str(self.table_dir))

    def load(self, target: ServedModel) -> Ranker:
        from cscnn.serving.ranker import load_ranker

        return load_ranker(self.checkpoint_dir, self.table_dir, target, self.catalog, self.images_dir)


def serve_config_from_env(environ: Mapping[str, str] | None = None) -> ServeConfig:
    """The `serve` settings: profile `CSCNN_PROFILE` (default `settings.DEFAULT_PROFILE`), file `CSCNN_CONFIG`,
    and `CSCNN_SET` (space-separated `section.key=value` overrides, as `--set` on the command line)."""
    config_file = settings.read("CSCNN_CONFIG", environ)
    cfg = load_config(
        settings.read("CSCNN_PROFILE", environ) or DEFAULT_PROFILE,
        Path(config_file) if config_file else None,
        shlex.split(settings.read("CSCNN_SET", environ) or ""),
    )
    return cfg.serve


def source_from_env(serve: ServeConfig, environ: Mapping[str, str] | None = None) -> ModelSource:
    """Local folders when `CSCNN_MODEL_DIR` is set (with `CSCNN_TABLE_DIR`, optional `CSCNN_CATALOG` and
    `CSCNN_IMAGES_DIR`); otherwise the registry of `CSCNN_STATE` / `MLFLOW_TRACKING_URI`: the version
    `CSCNN_MODEL_VERSION` when set (the pipeline's smoke check), else the alias `CSCNN_MODEL_ALIAS` (champion)."""
    model_dir, table_dir = settings.read("CSCNN_MODEL_DIR", environ), settings.read("CSCNN_TABLE_DIR", environ)
    if model_dir:
        if not table_dir:
            raise CSCNNError("CSCNN_MODEL_DIR is set but CSCNN_TABLE_DIR is not: the model needs its embedding table")
        catalog, images = settings.read("CSCNN_CATALOG", environ), settings.read("CSCNN_IMAGES_DIR", environ)
        return LocalSource(
            Path(model_dir),
            Path(table_dir),
            Path(catalog) if catalog else None,
            Path(images) if images else None,
        )
    return RegistrySource(
        alias=settings.read("CSCNN_MODEL_ALIAS", environ),
        version=settings.read("CSCNN_MODEL_VERSION", environ),
        name=serve.model_name,
        state=State.from_env(settings.read("CSCNN_STATE", environ)),
    )
