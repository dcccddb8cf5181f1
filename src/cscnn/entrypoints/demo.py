"""`make demo`: the daily loop, for real, on the embedded default (all local, offline, no servers to install).

1. generate the `demo` synthetic world into the landing folder (day 5 arrives broken on purpose);
2. set up Airflow, MLflow, DVC and BentoML state inside the project (`.state/`);
3. run the `cscnn_daily` DAG (`airflow dags test`) for each day in order: the first days wait for history,
   then the first champion, later days gate challengers, the broken day is stopped by validation;
4. print the decisions and where to look;
5. start the packaged ranking service on the champion, send one ranking request, print the top results, stop.
"""

from __future__ import annotations

import time
from pathlib import Path

from cscnn import project
from cscnn.config import load_config
from cscnn.daily.status import DayRecord, DayStatus
from cscnn.state import State


def _rule(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 100 - len(title)), flush=True)


def run_demo(landing: Path, profile: str = "demo", state: State | None = None, serve: bool = True) -> int:
    from cscnn.daily import faults, status
    from cscnn.data.io import list_days
    from cscnn.data.synth import generate_world
    from cscnn.entrypoints import airflow_setup

    started = time.perf_counter()
    state = state or State.from_env()
    cfg = load_config(profile)
    landing = Path(landing).resolve()
    _rule(f"1. landing data: the '{profile}' synthetic world in {landing}")
    summary = generate_world(cfg.world, landing)
    print(f"{summary['totals']}; broken on purpose: {cfg.world.broken_days or 'none'}")
    state.remember_defaults(landing, profile)  # the DAGs' default landing and profile from now on (Airflow UI)

    _rule(f"2. embedded Airflow in {state.airflow_home}")
    seconds = airflow_setup.init(state, quiet=True)
    print("airflow db migrate: " + (f"{seconds:.1f} s" if seconds else "already done"))

    days = list_days(landing)
    codes = {}
    _rule("3. airflow dags test cscnn_daily DAY, one day after the other (full task logs in the files named)")
    for day in days:
        log_file = state.root / "logs" / f"cscnn_daily-{day}.log"
        day_started = time.perf_counter()
        conf = {"landing": str(landing), "profile": profile}
        codes[day] = airflow_setup.run_dag(airflow_setup.DAILY_DAG, day, conf, state, log_file=log_file)
        record = faults.reported(state, day)
        print(
            f"{day}: {'ok    ' if codes[day] == 0 else 'FAILED'} {record.status or '-':<20} "
            f"{time.perf_counter() - day_started:5.0f} s   log: {log_file}",
            flush=True,
        )
        if record.status == status.DayStatus.REJECTED:
            for failure in record.failures:
                print(f"    failed expectation {failure['table']}.{failure['expectation']}: {failure['details']}")
    records = {day: faults.reported(state, day) for day in days}

    _rule("4. what the daily runs decided")
    print(decisions_table(records, codes))
    unexpected = [d for d, code in codes.items() if (code != 0) != (d in cfg.world.broken_days)]
    serve_code = 0
    if serve:
        _rule("5. the ranking service (bentoml serve) on the champion")
        serve_code = demo_request(state)
    print(where_to_look(state, records))
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s")
    if unexpected:
        print(f"UNEXPECTED: days {unexpected} did not end as planned (see their logs above)")
        return 1
    return serve_code


def decisions_table(records: dict[str, DayRecord], codes: dict[str, int]) -> str:
    lines = [
        f"{'day':<11} {'airflow':<8} {'status':<20} {'gate':<5} {'cand AUC':>8} {'champ AUC':>9}  model / reason",
        "-" * 100,
    ]
    for day, record in records.items():
        gate = record.gate or {}
        cand, champ = gate.get("candidate_auc"), gate.get("champion_auc")
        if record.status == DayStatus.REJECTED:
            note = "validation: " + "; ".join(f"{f['table']}.{f['expectation']}" for f in record.failures[:3])
        elif record.gate_passed is False:
            note = f"v{record.candidate_version} challenger; " + "; ".join(gate.get("reasons", [])[:2])
        elif record.status == DayStatus.PROMOTED:
            note = f"v{record.champion} is champion"
        else:
            note = record.error or ""
        verdict = {None: "-", True: "pass", False: "fail"}[record.gate_passed]
        lines.append(
            f"{day:<11} {'ok' if codes.get(day) == 0 else 'FAILED':<8} {record.status or '-':<20} {verdict:<5} "
            f"{'-' if cand is None else f'{cand:.4f}':>8} {'-' if champ is None else f'{champ:.4f}':>9}  {note}"
        )
    return "\n".join(lines)


def demo_request(state: State) -> int:
    """Start the packaged service on the champion (alias lookup, as in production), rank one user's
    candidates (catalogue ads plus the newest ones), print the top of the list, stop the service."""
    import httpx

    from cscnn.data.io import open_world
    from cscnn.errors import CSCNNError
    from cscnn.tools import model_registry, packaging

    champion = model_registry.resolve(model_registry.CHAMPION, state)
    if champion is None:
        print("no champion: nothing to serve")
        return 1
    world = open_world(state.registry_world)  # the versioned days: what the champion was trained and gated on
    last_day = world.days[-1]
    clicks = world.impressions([last_day])
    user = clicks.groupby("user_id")["click"].sum().idxmax()
    candidates = [
        *world.items["item_id"].iloc[:: max(1, len(world.items) // 30)].tolist(),
        *world.items["item_id"].tail(3),
    ]
    request = {
        "user": {"id": user},
        "context": {"device": "mobile", "hour": 20},
        "candidates": list(dict.fromkeys(candidates)),
    }
    built = sorted((state.bentoml_home / "bentos").glob(f"*/v{champion.version}"))  # built by the pipeline
    target = f"{built[0].parent.name}:{built[0].name}" if built else packaging.SERVICE
    env = packaging.bentoml_env(state.bentoml_home, {"CSCNN_STATE": str(state.root)})
    working_dir = None if built else project.bento_dir()
    try:
        with packaging.BentoServer(target, env, working_dir, timeout=120) as (url, ready_seconds, _log):
            answer = httpx.post(f"{url}/rank", json=request, timeout=30)
    except (CSCNNError, httpx.HTTPError) as exc:
        print(f"the service did not answer: {exc}")
        return 1
    if answer.status_code != 200:
        print(f"the service answered {answer.status_code}: {answer.text[:500]}")
        return 1
    body = answer.json()
    categories = dict(zip(world.items["item_id"], world.items["category"], strict=True))
    print(
        f"bentoml serve {target}: ready in {ready_seconds:.1f} s, serving {body['model']['name']} "
        f"v{body['model']['version']} (the champion). POST /rank for user {user} ({last_day} world), "
        f"{len(request['candidates'])} candidates; top 5:"
    )
    for rank, item in enumerate(body["items"][:5], 1):
        flags = ", ".join(item.get("flags") or []) or "-"
        category = categories.get(item["item_id"], "?")
        print(f"  {rank}. {item['item_id']:<10} {category:<5} p(click)={item['score']:.4f}  {flags}")
    return 0


def where_to_look(state: State, records: dict[str, DayRecord]) -> str:
    docs = [r.validation["docs"] for r in records.values() if r.validation and r.validation.get("docs")]
    rejected = [r.validation["docs"] for r in records.values() if r.validation and r.status == DayStatus.REJECTED]
    return "\n".join(
        [
            "",
            "Where to look:",
            f"  MLflow UI:       .venv/bin/mlflow ui --backend-store-uri {state.tracking_uri}  (http://127.0.0.1:5000)",
            '  Airflow UI:      eval "$(.venv/bin/cscnn airflow env)" && .venv/bin/airflow standalone',
            f"  data docs:       {docs[-1] if docs else '-'}",
            f"  rejected day:    {rejected[-1] if rejected else '-'}",
            f"  day status:      {state.root / 'days'}/<day>.json  (or: cscnn daily status --day DAY)",
            f"  data registry:   git -C {state.data_registry} log --oneline   (DVC remote {state.dvc_remote})",
            "  model registry:  .venv/bin/cscnn model list   |   roll back: .venv/bin/cscnn model rollback",
            "  serve:           make serve   (the champion, on http://127.0.0.1:3000)",
        ]
    )
