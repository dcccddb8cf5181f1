"""Typed configuration. Defaults live in the dataclasses; named profiles in `profiles.yaml` override them.

Resolution order (later wins): dataclass defaults -> profile (`tiny`, `small`, `bench`) -> an optional
YAML file of the same shape -> `--set section.key=value` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cscnn.errors import ConfigError
from cscnn.settings import DEFAULT_PROFILE
from cscnn.variants import VARIANTS

# What drives the visual part of the click model (docs/synthetic_world.md): attributes (five attributes, a few
# categories: the default world), many_directions (eight attributes, each category its own direction: a
# capacity bottleneck for a category-blind CNN), regions (a badge in a category-specific corner, or the texture).
VISUAL_MODELS = ("attributes", "many_directions", "regions")


@dataclass
class WorldConfig:
    """The synthetic world (`cscnn data synth`)."""

    n_categories: int = 8
    n_items: int = 1200  # catalogue size on the first day
    new_items_per_day: int = 60  # cold-start items added every later day
    n_users: int = 2000
    n_days: int = 8
    impressions_per_day: int = 25_000
    candidates_per_request: int = 10
    image_size: int = 64
    start_day: str = "2026-01-01"
    base_logit: float = -2.0  # sets the mean CTR
    affinity_weight: float = 1.0  # user x category affinity
    visual_weight: float = 1.2  # category-dependent effect of visual attributes
    position_weight: float = 0.15  # logit drop per slot
    clutter: int = 3  # distractor shapes per image
    pixel_noise: float = 12.0  # std of Gaussian pixel noise (0-255 scale)
    visual_model: str = "attributes"  # one of VISUAL_MODELS
    seed: int = 0
    # Days written with deliberate contract violations (labels out of {0, 1}, duplicated impressions): a
    # broken upstream export, so that demos and tests can watch validation stop a run. Empty by default.
    broken_days: list[str] = field(default_factory=list)


ATTENTION_GATES = ("sigmoid", "scaled", "residual")  # cscnn.models.attention.GATES implements each
CONV_INITS = ("default", "kaiming")
CONV_NORMS = ("none", "group")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class ModelConfig:
    """Sizes are our choice (the paper does not publish them); see docs/model.md."""

    variant: str = "cscnn"
    image_size: int = 64
    stem_stride: int = 4  # stride of the first conv (CNN-F uses 4)
    # none | group: GroupNorm after every conv (per image, so the per-batch image dedup stays exact)
    conv_norm: str = "none"
    conv_channels: list[int] = field(default_factory=lambda: [16, 32, 32, 32, 32])
    visual_dim: int = 32
    reduction: int = 4  # channel-attention MLP reduction ratio
    channel_prior_dim: int = 16  # size of the per-category, per-layer channel prior Ac_k
    spatial_kernel: int = 7
    # How an attention map M (channel or spatial, SE/CBAM/CSCNN alike) reweights its feature map F; see
    # docs/model.md. sigmoid: F * sigmoid(M), the papers' form (starts at 0.5: five layers shrink F 32x);
    # scaled: F * 2 sigmoid(M) (identity at M = 0); residual: F + F * sigmoid(M) (never below F): the best
    # validation AUC of SE, CBAM and CSCNN together (benchmarks/results/attention_forms.md).
    attention_gate: str = "residual"
    conv_init: str = "default"  # default: PyTorch's (shrinks activations layer by layer); kaiming: He normal
    prior_init_std: float = 1.0  # std of the CSCNN category priors at initialisation (channel and spatial)
    embed_dim: int = 16
    cross_layers: int = 3
    deep_layers: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.1
    pretrain_epochs: int = 3  # late_fusion only: category-classification epochs before freezing


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 2048
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0  # learning rate rises linearly from 0 over this many optimisation steps
    # The levers of docs/model.md ("Raising the image path toward its ceiling"), the same for every variant;
    # the chosen recipe (by validation AUC on `small`, 2 seeds): item-id dropout 0.3 and an EMA of 0.998.
    lr_schedule: str = "constant"  # constant | cosine (to 0 over `epochs`, after the warm-up)
    cnn_lr_scale: float = 1.0  # the visual part's learning rate = lr x this (the CTR network keeps lr)
    cnn_weight_decay: float = 0.0  # extra L2 weight decay (Adam's) of the visual part only
    item_id_dropout: float = 0.3  # share of training impressions whose item id is hidden (cold-start practice)
    ema_decay: float = 0.998  # > 0: validate, test and save an exponential moving average of the weights
    # Keep freed memory for reuse instead of returning it to the system after every step (glibc only; see
    # cscnn.training.allocator): on 2 CPU cores it halves the time of a plain CNN step.
    reuse_freed_memory: bool = True
    patience: int = 2  # early stopping on validation AUC
    seed: int = 0
    dedup: bool = True  # each unique image goes through the CNN once per batch
    val_days: int = 1
    test_days: int = 1
    window_days: int = 0  # 0: every training day; otherwise the last N days before validation
    device: str = "auto"  # auto: cuda when available, else cpu
    num_threads: int = 0  # torch CPU threads; 0: all cores (shared evenly by the workers on a machine)
    # Data parallelism (docs/training.md): batch_size is the global batch, each worker takes its share.
    workers: int = 1  # processes on this machine (`cscnn train --workers N` starts them with torchrun)
    nodes: int = 1  # machines, on a cluster only (a Kubeflow Trainer TrainJob with `nodes` x `workers`)
    gpus: int = 1  # GPUs per node a cluster's training pods request (one worker per GPU); 0: CPU nodes
    dist_backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU
    dist_timeout_s: int = 300  # a collective waiting longer than this fails the run (a dead rank, no hang)
    # Streaming: memory stays flat as the days and the catalogue grow.
    chunk_rows: int = 65_536  # rows read, validated and encoded at a time (one Arrow record batch)
    shuffle_buffer_rows: int = 262_144  # rows mixed before batches are cut; >= the data: a full shuffle
    image_cache_items: int = 20_000  # decoded images kept (least recently used out); 64 px: 12 KB each
    # The data path (docs/training.md, "Feeding the step"): decode once, assemble batches ahead of the step.
    decode_once: bool = True  # images decoded once per catalogue version into a mapped store (no cache above)
    # The training days read, validated and encoded once per training, in the vocabulary pass, into local
    # temporary files that every epoch reads back (cscnn.training.encoded_days); false: every epoch re-reads them.
    encode_once: bool = True
    image_store_dir: str = ""  # where the stores live; "": a node-local temp folder (cscnn.data.image_store)
    image_store_keep: int = 4  # stores kept there (most recently used); older catalogue versions are removed
    # Batches assembled ahead by a background thread (bounded queue); 0: inline; -1 (auto): 4 on CUDA, inline
    # on CPU, where the thread would take a core from the step's own threads (docs/benchmarks.md).
    prefetch_batches: int = -1


@dataclass
class ValidationConfig:
    """Great Expectations bounds for one day of data (`cscnn validate`); the schema comes from schema.py."""

    min_rows: int = 100  # impressions per day
    max_rows: int = 50_000_000
    min_ctr: float = 0.005
    max_ctr: float = 0.5
    max_category_drift: float = 0.25  # KL divergence of the day's category mix from the previous day's
    check_images: bool = True  # every catalogue image present and decodable
    require_previous_day: bool = True  # earlier landed days versioned (or rejected) first; false: a backfill


@dataclass
class GateConfig:
    """Promotion gate (after TFX's model blessing); every check must pass for `champion` to move."""

    auc_floor: float = 0.6  # absolute minimum AUC on the eval day
    max_auc_drop: float = 0.005  # candidate may trail the champion by at most this (same eval day)
    max_category_drop: float = 0.05  # no category's AUC may drop by more than this vs the champion
    min_category_impressions: int = 200  # categories with fewer eval impressions are not judged


@dataclass
class ServeConfig:
    """The ranking service (bento/service.py)."""

    max_candidates: int = 1000
    poll_seconds: float = 10.0  # how often the service asks MLflow whether `champion` moved; 0: never
    model_name: str = "cscnn-ctr"  # registered model name in MLflow
    # Traffic and connection limits (bento/service.py, cscnn.serving.edge): what one slow or idle client may hold.
    max_concurrency: int = 64  # requests in flight per service, shared by its workers; 429 beyond
    request_timeout_s: float = 30.0  # a request not answered by then gets 504
    header_timeout_s: float = 10.0  # a connection must send a whole request head within this, or it is closed
    body_timeout_s: float = 10.0  # a request body must arrive whole within this of its head, or 408
    min_body_bytes_per_s: int = 1024  # ... and, after its first second, at this average rate at least, or 408
    keepalive_timeout_s: int = 5  # an idle keep-alive connection is closed after this
    # Open connections per worker; more are closed at once. A connection that is still sending its request holds
    # no in-flight slot (only its buffer, at most the body limit), so this is above any slow-client count that
    # should leave ranking up (256, tests/integration/test_serving_edge.py).
    max_connections: int = 512
    max_header_bytes: int = 65_536  # a request head (request line + headers) larger than this gets 431


@dataclass
class OnlineConfig:
    """Simulated users and experiments through the ranking service (`cscnn simulate`, docs/online.md)."""

    requests: int = 1500  # requests per simulated day
    candidates: int = 50  # ads the ranker orders per request, drawn from the catalogue on sale that day
    top_k: int = 10  # ads shown per page, at slots 1..top_k; the rest are not shown
    max_requests: int = 100_000  # the bound on one simulated day: more is refused
    concurrency: int = 4  # requests in flight per served arm
    timeout_s: float = 10.0  # one request; a timeout is a failed request
    salt: str = "cscnn-ab-1"  # of the per-user hash that assigns arms; a new salt reshuffles users
    bootstrap: int = 1000  # resamples of users for the lift intervals
    seed: int = 0


@dataclass
class Config:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Reject settings that would fail deep inside torch later, with the setting's name."""
        m, t = self.model, self.train
        checks = [
            (
                self.world.visual_model in VISUAL_MODELS,
                f"world.visual_model={self.world.visual_model!r}: choose one of {list(VISUAL_MODELS)}",
            ),
            (m.variant in VARIANTS, f"model.variant={m.variant!r}: choose one of {list(VARIANTS)}"),
            (m.stem_stride >= 1, "model.stem_stride must be >= 1"),
            (
                m.image_size > 0 and m.image_size % (8 * m.stem_stride) == 0,
                f"model.image_size={m.image_size} must be a positive multiple of 8 x model.stem_stride "
                f"= {8 * m.stem_stride}",
            ),
            (
                len(m.conv_channels) == 5 and all(c >= 1 for c in m.conv_channels),
                f"model.conv_channels={m.conv_channels} needs 5 positive widths (CNN-F layout)",
            ),
            (all(w >= 1 for w in m.deep_layers), f"model.deep_layers={m.deep_layers} must be positive widths"),
            (m.spatial_kernel >= 1 and m.spatial_kernel % 2 == 1, "model.spatial_kernel must be odd and >= 1"),
            (0.0 <= m.dropout < 1.0, "model.dropout must be in [0, 1)"),
            (
                m.attention_gate in ATTENTION_GATES,
                f"model.attention_gate={m.attention_gate!r}: choose one of {list(ATTENTION_GATES)}",
            ),
            (m.conv_init in CONV_INITS, f"model.conv_init={m.conv_init!r}: choose one of {list(CONV_INITS)}"),
            (m.prior_init_std > 0 and t.warmup_steps >= 0, "model.prior_init_std must be > 0, train.warmup_steps >= 0"),
            (m.cross_layers >= 0 and m.pretrain_epochs >= 0, "model.cross_layers/pretrain_epochs must be >= 0"),
            (
                min(m.visual_dim, m.reduction, m.channel_prior_dim, m.embed_dim) >= 1,
                "model.visual_dim, reduction, channel_prior_dim and embed_dim must be >= 1",
            ),
            (t.epochs >= 1 and t.batch_size >= 1 and t.patience >= 1, "train.epochs/batch_size/patience must be >= 1"),
            (t.lr > 0 and t.weight_decay >= 0, "train.lr must be > 0 and train.weight_decay >= 0"),
            (t.lr_schedule in LR_SCHEDULES, f"train.lr_schedule={t.lr_schedule!r}: choose one of {LR_SCHEDULES}"),
            (
                t.cnn_lr_scale > 0 and t.cnn_weight_decay >= 0 and 0 <= t.item_id_dropout < 1 and 0 <= t.ema_decay < 1,
                "train.cnn_lr_scale must be > 0, cnn_weight_decay >= 0, item_id_dropout and ema_decay in [0, 1)",
            ),
            (m.conv_norm in CONV_NORMS, f"model.conv_norm={m.conv_norm!r}: choose one of {CONV_NORMS}"),
            (t.val_days >= 1 and t.test_days >= 1, "train.val_days and train.test_days must be >= 1"),
            (t.window_days >= 0 and t.num_threads >= 0, "train.window_days and train.num_threads must be >= 0"),
            (t.workers >= 1 and t.nodes >= 1 and t.gpus >= 0, "train.workers, nodes must be >= 1, gpus >= 0"),
            (t.dist_backend in ("auto", "gloo", "nccl"), f"train.dist_backend={t.dist_backend!r}: auto, gloo or nccl"),
            (
                min(t.dist_timeout_s, t.chunk_rows, t.image_cache_items) >= 1 and t.shuffle_buffer_rows >= 0,
                "train.dist_timeout_s, chunk_rows and image_cache_items must be >= 1; shuffle_buffer_rows >= 0",
            ),
            (
                t.image_store_keep >= 1 and t.prefetch_batches >= -1,
                "train.image_store_keep must be >= 1 and train.prefetch_batches >= -1 (-1: auto)",
            ),
            (
                t.workers * t.nodes <= t.batch_size,
                f"train.workers x train.nodes = {t.workers * t.nodes} is larger than train.batch_size="
                f"{t.batch_size}: every worker takes a share of each global batch, so some would get no rows",
            ),
            (self.serve.max_candidates >= 1, "serve.max_candidates must be >= 1"),
            (self.serve.poll_seconds >= 0, "serve.poll_seconds must be >= 0"),
            (
                min(self.serve.max_concurrency, self.serve.max_connections, self.serve.max_header_bytes) >= 1
                and min(self.serve.request_timeout_s, self.serve.header_timeout_s, self.serve.keepalive_timeout_s) > 0
                and min(self.serve.body_timeout_s, self.serve.min_body_bytes_per_s) > 0,
                "serve: the traffic and connection limits must be > 0",
            ),
        ]
        for ok, message in checks + _loop_checks(self.validation, self.gate) + _online_checks(self.online):
            if not ok:
                raise ConfigError(message)
        return self


def _loop_checks(v: ValidationConfig, g: GateConfig) -> list[tuple[bool, str]]:
    return [
        (0 <= v.min_rows <= v.max_rows, "validation.min_rows must be >= 0 and <= validation.max_rows"),
        (0.0 <= v.min_ctr <= v.max_ctr <= 1.0, "validation.min_ctr <= validation.max_ctr must lie in [0, 1]"),
        (v.max_category_drift >= 0, "validation.max_category_drift must be >= 0"),
        (0.0 <= g.auc_floor <= 1.0, "gate.auc_floor must lie in [0, 1]"),
        (
            g.max_auc_drop >= 0 and g.max_category_drop >= 0,
            "gate.max_auc_drop and gate.max_category_drop must be >= 0",
        ),
    ]


def _online_checks(o: OnlineConfig) -> list[tuple[bool, str]]:
    return [
        (1 <= o.requests <= o.max_requests, f"online.requests={o.requests} must be in 1..online.max_requests"),
        (1 <= o.top_k <= o.candidates, "online.top_k must be >= 1 and <= online.candidates"),
        (
            o.concurrency >= 1 and o.timeout_s > 0 and o.bootstrap >= 100,
            "online.concurrency must be >= 1, online.timeout_s > 0, online.bootstrap >= 100",
        ),
    ]


def profiles() -> dict[str, dict]:
    text = resources.files("cscnn").joinpath("profiles.yaml").read_text()
    return yaml.safe_load(text)


def _merge(obj: Any, updates: dict, where: str) -> None:
    if not isinstance(updates, dict):
        raise ConfigError(f"{where}: expected a mapping, got {updates!r}")
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'; known keys: {sorted(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, _coerce(value, current, f"{where}.{key}"))


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Keep each field's type: YAML and `--set` give strings/ints that must match the default's type."""
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
            return value.lower() in {"true", "1"}
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(current, list):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if isinstance(value, list):
            # YAML reads an unquoted 2026-01-05 as a date; the config keeps days as ISO strings
            return [v.isoformat() if isinstance(v, dt.date) else v for v in value]
    elif isinstance(current, str):
        return str(value)
    raise ConfigError(f"{where}: cannot use {value!r} (expected {type(current).__name__})")


def load_config(
    profile: str = DEFAULT_PROFILE, config_file: Path | None = None, overrides: list[str] | None = None
) -> Config:
    """Build the config for a profile, then apply a YAML file and `section.key=value` overrides."""
    available = profiles()
    if profile not in available:
        raise ConfigError(f"unknown profile '{profile}'; available: {sorted(available)}")
    cfg = Config()
    _merge(cfg, available[profile] or {}, f"profile '{profile}'")
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        _merge(cfg, yaml.safe_load(path.read_text()) or {}, str(path))
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override '{item}' must look like section.key=value, e.g. train.epochs=3")
        dotted, value = item.split("=", 1)
        *path_parts, key = dotted.split(".")
        nested: dict = {key: yaml.safe_load(value) if value else value}
        for part in reversed(path_parts):
            nested = {part: nested}
        _merge(cfg, nested, f"override '{item}'")
    return cfg.validate()


def config_from_dict(data: dict) -> Config:
    cfg = Config()
    _merge(cfg, data, "config")
    return cfg.validate()
