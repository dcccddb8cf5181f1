"""What each step of the daily loop returns: one dataclass per result, defined here once.

The steps return these; the KFP components turn them into the JSON a parameter or an artifact carries
(`to_dict`) and back (`from_dict`) at the component boundary only; the CLI and the tests read their fields.
The day's record (`cscnn.daily.status`) keeps the smaller shapes `record()` gives. The model reference
(`ModelRef`) and the gate's decision (`GateDecision`) are defined by the tools that make them
(`cscnn.tools.model_registry`, `cscnn.tools.gate`); the validation report by `cscnn.tools.validation`.
Standard library only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    """KFP's dict parameters cannot carry nulls: an unset field is left out, and `from_dict` restores it."""
    return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class Versioned:
    """The version step: the data version's tag and commit, the history it makes, and whether that is enough."""

    tag: str  # `DAY@commit`, on every later artifact
    commit: str
    world_dir: str
    history_days: int
    ready: bool  # enough versioned days to train a candidate
    data_version: dict[str, Any] = field(default_factory=dict)  # `DataVersion.to_dict()`: files, remote, days

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Versioned:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class RefreshResult:
    """The embedding refresh: how many new items the champion's CNN embedded (0 and why when skipped)."""

    refreshed: int
    n_items: int | None = None
    version: str | None = None  # the champion version that embedded them
    embeddings: str | None = None  # the extended table's artifact path, when one was attached
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self))

    record = to_dict


@dataclass(frozen=True)
class CandidateSummary:
    """The trained candidate, from its checkpoint card."""

    fingerprint: str
    days: dict[str, list[str]]
    val_auc: float
    best_epoch: int
    train_seconds: float
    workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    record = to_dict


@dataclass(frozen=True)
class Evaluation:
    """Candidate and (when there is one) champion on the same days: what the gate decides on.

    `candidate` and `champion` are `cscnn.training.metrics.summarize` results (auc, logloss, per_category_auc,
    cold_start_auc, ...)."""

    days: list[str]
    candidate: dict[str, Any]
    champion: dict[str, Any] | None = None
    champion_version: str | None = None
    champion_day: str | None = None  # the day the champion was gated on (the gate's day_order check)

    def to_dict(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**_known(cls, data))

    @property
    def champion_text(self) -> str:
        """`0.7412 (v3)` or `none`: how logs and the day's record name the champion's AUC."""
        if self.champion is None:
            return "none"
        return f"{self.champion['auc']:.4f} (v{self.champion_version})"

    def record(self) -> dict[str, Any]:
        return {"candidate_auc": self.candidate["auc"], "champion": self.champion_text}


@dataclass(frozen=True)
class PackageResult:
    """The packaged service: the bento, and what its smoke check measured."""

    tag: str
    build_seconds: float
    ready_seconds: float
    latency_ms: float
    top_items: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    record = to_dict


@dataclass(frozen=True)
class Promotion:
    """`champion` moved to `champion`; `previous` is the version it left (None for the first)."""

    champion: str
    previous: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self))


@dataclass(frozen=True)
class KeptChampion:
    """The gate said no: the champion that stays (None before the first), and the gate's reasons."""

    champion: str | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self))
