"""`cscnn online-loop`: the daily loop learning from its own traffic, on a synthetic world, end to end.

The first `--history` days land as the generator logged them (random pages: the old system's logs). Every
later day is what the ranking service served: the champion (or, before there is one, a random order) ranks
simulated users' requests through a real `bentoml serve`, its pages and clicks become the landing day, and
the `cscnn_daily` DAG (`airflow dags test`, as `make demo`) validates, versions, retrains and gates on it. The
table per day: where the day came from, what the served pages earned against the oracle and random on the
same requests, and what the DAG decided (candidate and champion AUC on that day's held-out data).

Everything lives under WORK (world, landing, state); a rerun goes on where it stopped (a landed day is never
re-simulated: raw data is never modified).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from cscnn.config import load_config
from cscnn.state import State


def run_loop(work: Path, profile: str = "demo", history: int = 3, overrides: list[str] | None = None) -> list[dict]:
    from cscnn.daily import faults
    from cscnn.data import schema
    from cscnn.data.io import list_days
    from cscnn.data.synth import generate_world
    from cscnn.entrypoints import airflow_setup
    from cscnn.errors import CSCNNError
    from cscnn.online.arms import ArmSpec
    from cscnn.online.served_day import simulate
    from cscnn.tools import model_registry

    work = Path(work).resolve()
    overrides = list(overrides or [])
    cfg = load_config(profile, overrides=overrides)
    world, landing = work / "world", work / "landing"
    generate_world(cfg.world, world)
    days = list_days(world)
    if not 1 <= history < len(days):
        raise CSCNNError(f"--history must be in 1..{len(days) - 1} (the world has {len(days)} days)")
    _prepare_landing(world, landing, days[:history])
    state = State.from_env(work / "state")
    state.remember_defaults(landing, profile)
    airflow_setup.init(state, quiet=True)
    rows = []
    for i, day in enumerate(days):
        started = time.perf_counter()
        if i >= history and not schema.impressions_path(landing, day).exists():
            champion = model_registry.resolve(model_registry.CHAMPION, state)
            spec = ArmSpec("champion", "champion") if champion else ArmSpec("random", "random")
            simulate(world, day, [spec], [1.0], cfg, work / "served" / day, state, profile, landing=landing)
        code = airflow_setup.run_dag(
            airflow_setup.DAILY_DAG,
            day,
            {"landing": str(landing), "profile": profile, "overrides": overrides},
            state,
            log_file=state.root / "logs" / f"cscnn_daily-{day}.log",
        )
        record = faults.reported(state, day)
        served = _summary(work / "served" / day) if i >= history else None  # this run's, or an earlier run's
        rows.append(_row(day, i < history, served, code, record, time.perf_counter() - started))
        print(_line(rows[-1]), flush=True)
    (work / "loop.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def _prepare_landing(world: Path, landing: Path, history: list[str]) -> None:
    """The landing folder: the catalogue, users and images, and the history days as the generator logged them."""
    from cscnn.data import schema

    if landing.exists():
        return
    tmp = landing.with_name(landing.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (schema.ITEMS_FILE, schema.USERS_FILE):
        shutil.copy(world / name, tmp / name)
    shutil.copytree(world / schema.IMAGES_DIR, tmp / schema.IMAGES_DIR)
    for day in history:
        target = schema.impressions_path(tmp, day)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(schema.impressions_path(world, day), target)
    tmp.rename(landing)


def _summary(out: Path) -> dict | None:
    """What `cscnn simulate` wrote for a served day (None when the day was not served)."""
    summary = out / "summary.json"
    return json.loads(summary.read_text()) if summary.is_file() else None


def _row(day: str, logged: bool, summary: dict | None, code: int, record, seconds: float) -> dict:
    gate = record.gate or {}
    row = {
        "day": day,
        "source": "generator (random pages)" if logged else "served",
        "airflow": "ok" if code == 0 else "FAILED",
        "status": str(record.status or "-"),
        "champion": record.champion,
        "candidate_auc": gate.get("candidate_auc"),
        "champion_auc": gate.get("champion_auc"),
        "seconds": round(seconds, 1),
    }
    if summary:
        arm = summary["table"][0]
        row.update(
            served_by=f"{arm['arm']} {arm['versions']}".strip(),
            ctr_at_k=arm["ctr_at_k"],
            expected_per_request=arm["expected_per_request"],
            oracle_per_request=summary["oracle_per_request"],
            random_per_request=summary["random_per_request"],
            failed_requests=arm["failed_requests"],
            served_log_valid=summary["validation"]["success"],
        )
    return row


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _line(row: dict) -> str:
    return (
        f"{row['day']}  {row['source']:<25} {row.get('served_by', '-'):<28} CTR@K {_fmt(row.get('ctr_at_k'))}  "
        f"E[clicks]/req {_fmt(row.get('expected_per_request'))} (oracle {_fmt(row.get('oracle_per_request'))}, "
        f"random {_fmt(row.get('random_per_request'))})  {row['airflow']:<6} {row['status']:<20} "
        f"cand AUC {_fmt(row['candidate_auc'])} champ AUC {_fmt(row['champion_auc'])}  {row['seconds']:.0f} s"
    )


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| day | landing data | served by | CTR@K | expected clicks / request (oracle; random) | DAG | status "
        "| candidate AUC | champion AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        expected = (
            f"{_fmt(r['expected_per_request'])} ({_fmt(r['oracle_per_request'])}; {_fmt(r['random_per_request'])})"
            if "expected_per_request" in r
            else "-"
        )
        lines.append(
            f"| {r['day']} | {r['source']} | {r.get('served_by', '-')} | {_fmt(r.get('ctr_at_k'))} | {expected} "
            f"| {r['airflow']} | {r['status']} | {_fmt(r['candidate_auc'])} | {_fmt(r['champion_auc'])} |"
        )
    return "\n".join(lines) + "\n"
