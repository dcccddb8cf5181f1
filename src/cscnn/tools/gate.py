"""The promotion gate, after TFX's model blessing: a candidate becomes champion only if every check passes.

    auc_floor          candidate AUC on the eval day >= gate.auc_floor
    auc_change         candidate AUC >= champion AUC - gate.max_auc_drop (same eval day; skipped without champion)
    category:<name>    per category with enough impressions: candidate AUC >= champion's - gate.max_category_drop
                       (skipped without a champion)
    day_order          the eval day is not older than the day the champion was gated on: a late or backfilled
                       day never replaces a champion chosen on newer data (skipped when either day is unknown)

The decision is data (JSON), saved as an artifact and printed in the task log; nothing here moves an alias.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cscnn.config import GateConfig


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped
    detail: str


@dataclass
class GateDecision:
    passed: bool
    checks: list[Check] = field(default_factory=list)
    candidate_auc: float | None = None
    champion_auc: float | None = None
    champion_version: str | None = None

    @property
    def reasons(self) -> list[str]:
        """Why the candidate failed (empty when it passed)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if c.passed is False]

    def summary(self) -> str:
        verdict = "PASS: promote the candidate" if self.passed else "FAIL: champion stays"
        marks = {True: "ok  ", False: "FAIL", None: "skip"}
        return "\n".join([f"gate {verdict}"] + [f"  [{marks[c.passed]}] {c.name}: {c.detail}" for c in self.checks])

    def markdown(self) -> str:
        """The decision as a Markdown table (the KFP UI shows it as the `gate` task's Markdown output)."""
        verdict = "**PASS**: promote the candidate" if self.passed else "**FAIL**: the champion stays"
        marks = {True: "pass", False: "**fail**", None: "skipped"}
        rows = [f"| {c.name} | {marks[c.passed]} | {c.detail.replace('|', '/')} |" for c in self.checks]
        return "\n".join([f"Gate: {verdict}", "", "| check | result | detail |", "|---|---|---|", *rows]) + "\n"

    def to_dict(self) -> dict:
        return {**asdict(self), "reasons": self.reasons}

    @classmethod
    def from_dict(cls, data: dict) -> GateDecision:
        """The inverse of `to_dict` (`reasons` is derived from the checks, so it is not read back)."""
        return cls(
            passed=bool(data["passed"]),
            checks=[Check(**check) for check in data.get("checks", [])],
            candidate_auc=data.get("candidate_auc"),
            champion_auc=data.get("champion_auc"),
            champion_version=data.get("champion_version"),
        )


def decide(
    candidate: dict,
    champion: dict | None,
    cfg: GateConfig,
    champion_version: str | None = None,
    day: str | None = None,
    champion_day: str | None = None,
) -> GateDecision:
    """`candidate` and `champion` are `cscnn.training.metrics.summarize` results on the same eval day `day`;
    `champion_day` is the day the champion was gated on."""
    cand_auc = candidate.get("auc")
    checks = [
        Check(
            "auc_floor",
            cand_auc is not None and cand_auc >= cfg.auc_floor,
            f"candidate AUC {_fmt(cand_auc)} vs floor {cfg.auc_floor:.4f}",
        )
    ]
    champ_auc = champion.get("auc") if champion else None
    if champion is None:
        checks.append(Check("auc_change", None, "no champion yet: first model, change check skipped"))
    elif champ_auc is None or cand_auc is None:
        checks.append(Check("auc_change", False, "AUC undefined on the eval day (one class only?)"))
    else:
        delta = cand_auc - champ_auc
        checks.append(
            Check(
                "auc_change",
                delta >= -cfg.max_auc_drop,
                f"candidate {cand_auc:.4f} vs champion {champ_auc:.4f} (delta {delta:+.4f}, "
                f"allowed drop {cfg.max_auc_drop:.4f})",
            )
        )
    if champion is not None:
        checks += _category_checks(candidate, champion, cfg)
        checks.append(_day_order(day, champion_day))
    passed = all(c.passed is not False for c in checks)
    return GateDecision(passed, checks, cand_auc, champ_auc, champion_version)


def _day_order(day: str | None, champion_day: str | None) -> Check:
    if not day or not champion_day:
        return Check("day_order", None, "the champion's day is not recorded: order not checked")
    if day < champion_day:
        return Check(
            "day_order",
            False,
            f"day {day} is older than the champion's day {champion_day}: a late or backfilled day never moves "
            "the champion backwards",
        )
    return Check("day_order", True, f"day {day} is not older than the champion's day {champion_day}")


def _category_checks(candidate: dict, champion: dict, cfg: GateConfig) -> list[Check]:
    counts = candidate.get("per_category_n", {})
    checks = []
    for name, cand in sorted(candidate.get("per_category_auc", {}).items()):
        champ = champion.get("per_category_auc", {}).get(name)
        n = counts.get(name)
        if cand is None or champ is None:
            checks.append(Check(f"category:{name}", None, "AUC undefined for candidate or champion"))
        elif n is not None and n < cfg.min_category_impressions:
            checks.append(
                Check(f"category:{name}", None, f"only {n} eval impressions (< {cfg.min_category_impressions})")
            )
        else:
            delta = cand - champ
            checks.append(
                Check(
                    f"category:{name}",
                    delta >= -cfg.max_category_drop,
                    f"{cand:.4f} vs {champ:.4f} (delta {delta:+.4f}, allowed drop {cfg.max_category_drop:.4f})",
                )
            )
    return checks


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"
