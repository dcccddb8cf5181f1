"""Ranking-service latency and throughput over HTTP, with the lookup table and with the CNN in the request path.

Starts the real service (`bentoml serve`, two workers of one torch thread each) on a checkpoint and its embedding
table, sends ranking requests of 10, 200 and 1000 candidates at concurrency 1 and 8 from a client on the same
machine, and reports client-side p50/p99 latency and throughput. Then it restarts the service with the CNN put
back in the request path (every candidate's visual vector computed from its image per request, images
pre-decoded in memory) and measures the same grid, to show what the lookup table saves. Usage (repository root,
venv active):

    python benchmarks/serving.py --data data/small --model artifacts/small/cscnn --table artifacts/small/embeddings

The client: `concurrency` keep-alive HTTP/1.1 connections, each sending its next POST /rank as soon as the last
answer is read; a latency runs from the request's first byte written to the answer's last byte read. It is
`RawPost` (asyncio streams on uvloop, request bytes built once) by default; before, it was an httpx.AsyncClient
(`--client httpx`), which sends the same requests but spends several times the CPU per request, and on these 2
shared cores that CPU came out of the service's share. Each cell's first answer is checked (200, one item per
candidate). Candidates and users are drawn from the world's catalogue and users; the catalogue is the world's
items.parquet.

`--side-by-side` measures one cell (200 candidates x 8 clients by default) against three servers of the same
`Ranker` in one run, in alternating rounds, so that they share the machine's conditions:

    floor     in-process, one thread: parse the JSON body with the request model, rank, serialise the answer
    bare      uvicorn alone (`bare_app`, the same workers, body parsing and serialisation; no BentoML)
    service   the real service (`bentoml serve` of bento/service.py)

and then an open-loop run against bare and service: requests sent at a fixed rate, 80 % of that server's best
closed-loop throughput, over 16 connections, each latency counted from the moment its request was due, so a
stalled server shows in the latency of every request that waited for it (a closed loop sends less while it
stalls: coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import torch

from cscnn.data import schema
from cscnn.tools.packaging import SERVICE, BentoServer, bentoml_env

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10, 200, 1000)
CONCURRENCY = (1, 8)
VARIANTS = {
    "table": "visual vectors looked up in the embedding table (the service as deployed)",
    "cnn": "visual vectors computed by the CNN from each candidate's image, per request",
}


def payloads(world: Path, size: int, count: int, rng: np.random.Generator) -> list[bytes]:
    """`count` distinct request bodies of `size` candidates: random users (with their features), devices, hours."""
    items = pd.read_parquet(world / schema.ITEMS_FILE, columns=["item_id"])["item_id"].to_numpy()
    users = pd.read_parquet(world / schema.USERS_FILE)
    bodies = []
    for _ in range(count):
        user = users.iloc[int(rng.integers(len(users)))]
        body = {
            "user": {"id": user.user_id, "age_group": user.age_group, "gender": user.gender},
            "context": {"device": str(rng.choice(["mobile", "desktop", "tablet"])), "hour": int(rng.integers(24))},
            "candidates": rng.choice(items, size=size, replace=False).tolist(),
        }
        bodies.append(json.dumps(body).encode())
    return bodies


async def load(
    url: str, bodies: list[bytes], concurrency: int, requests: int, seconds: float, client: str = "raw"
) -> dict:
    """`concurrency` clients, one keep-alive connection each, sending back to back until `requests` are done or
    `seconds` have passed. A latency is from the request's first byte sent to its response's last byte read."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    post = RawPost if client == "raw" else HttpxPost

    async def one_client(connection, offset: int) -> None:
        nonlocal failures
        n = offset
        while len(latencies) + failures < requests and time.perf_counter() < deadline:
            started = time.perf_counter()
            status, _ = await connection.post(bodies[n % len(bodies)])
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
            n += concurrency

    connections = [await post.open(url, concurrency) for _ in range(concurrency)]
    status, answer = await connections[0].post(bodies[0])  # one unmeasured request checks the answer
    if status != 200 or len(json.loads(answer)["items"]) != len(json.loads(bodies[0])["candidates"]):
        raise RuntimeError(f"/rank answered {status}: {answer[:300]!r}")
    try:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, i) for i, c in enumerate(connections)))
        wall = time.perf_counter() - started
    finally:
        for connection in connections:
            await connection.close()
    ms = np.asarray(latencies) * 1e3
    return {
        "requests": len(latencies),
        "failures": failures,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "requests_per_s": len(latencies) / wall,
    }


class RawPost:
    """POST /rank over one HTTP/1.1 keep-alive connection, written and read with asyncio streams: the request
    bytes are built once per body, the answer read by its Content-Length. The same requests and answers as
    httpx, at a fraction of its CPU per request, which on 2 shared cores is CPU the service does not get."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self.heads: dict[int, bytes] = {}

    @classmethod
    async def open(cls, url: str, _concurrency: int) -> RawPost:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
        return cls(reader, writer, f"{host}:{port}")

    async def post(self, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST /rank HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        status = int(answer[9:12])
        headers = answer.lower()
        at = headers.find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"an answer without content-length: {answer[:300]!r}")
        length = int(headers[at + 17 : headers.index(b"\r\n", at + 2)])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class HttpxPost:
    """The same POST through an `httpx.AsyncClient` (the benchmark's client before the raw one; `--client httpx`)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    async def open(cls, url: str, _concurrency: int) -> HttpxPost:
        return cls(httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=60))

    async def post(self, body: bytes) -> tuple[int, bytes]:
        answer = await self.client.post("/rank", content=body, headers={"content-type": "application/json"})
        return answer.status_code, answer.content

    async def close(self) -> None:
        await self.client.aclose()


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, connections: int = 16) -> dict:
    """Requests due at a fixed `rate` for `seconds`, sent by `connections` keep-alive connections: each takes
    the next due request, waits for its due time if it is early, sends it and reads the answer; a request due
    while every connection is busy waits for one. Each latency runs from when its request was due to its
    answer's last byte. (No task per request: the client shares the service's 2 cores.)"""
    pool = [await RawPost.open(url, connections) for _ in range(connections)]
    count = int(rate * seconds)
    latencies: list[float] = []
    failures, next_due = 0, 0
    started = time.perf_counter()

    async def sender(connection: RawPost) -> None:
        nonlocal failures, next_due
        while next_due < count:
            n, next_due = next_due, next_due + 1
            due = started + n / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            status, _ = await connection.post(bodies[n % len(bodies)])
            if status == 200:
                latencies.append(time.perf_counter() - due)
            else:
                failures += 1

    await asyncio.gather(*(sender(c) for c in pool))
    wall = time.perf_counter() - started
    for connection in pool:
        await connection.close()
    ms = np.asarray(latencies) * 1e3
    return {
        "requests": len(latencies),
        "failures": failures,
        "offered_per_s": rate,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "requests_per_s": len(latencies) / wall,
    }


def in_process(ranker, parse, bodies: list[bytes], requests: int) -> dict:
    """The floor: parse, rank and serialise `requests` bodies back to back in this thread."""
    latencies = []
    started = time.perf_counter()
    for n in range(requests):
        sent = time.perf_counter()
        ranker.rank(parse(bodies[n % len(bodies)])).model_dump_json()
        latencies.append(time.perf_counter() - sent)
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1e3
    return {
        "requests": requests,
        "failures": 0,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "requests_per_s": requests / wall,
    }


def load_bare_ranker():
    """The `Ranker` and request parser that `bare_app` and the floor use, from the service's environment."""
    from cscnn.serving.ranker import load_ranker
    from cscnn.serving.schemas import request_model

    torch.set_num_threads(int(os.environ.get("CSCNN_TORCH_THREADS", "1")))
    ranker = load_ranker(
        Path(os.environ["CSCNN_MODEL_DIR"]),
        Path(os.environ["CSCNN_TABLE_DIR"]),
        catalog_file=Path(os.environ["CSCNN_CATALOG"]),
    )
    return ranker, request_model(int(os.environ["CSCNN_BARE_MAX_CANDIDATES"])).model_validate_json


def bare_app():
    """uvicorn factory (`serving:bare_app`): POST any path ranks the body with the same `Ranker`; no BentoML,
    no middleware. The startup objects are frozen out of the collector's reach, as the service does."""
    import gc

    from pydantic import ValidationError

    ranker, parse = load_bare_ranker()
    gc.collect()
    gc.freeze()

    async def app(scope, receive, send) -> None:
        body, more = b"", scope["method"] == "POST"
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, answer = 200, b"{}"
        if scope["method"] == "POST":
            try:
                answer = ranker.rank(parse(body)).model_dump_json().encode()
            except ValidationError:
                status = 400
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


class BareServer:
    """`bare_app` under uvicorn, `workers` processes, on a free local port, as a context manager (url)."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.env, self.workers = env, workers

    def __enter__(self) -> str:
        import subprocess

        from cscnn.tools.packaging import free_port

        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "serving:bare_app",
            "--factory",
            "--app-dir",
            str(ROOT / "benchmarks"),
        ]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(self.workers)]
        command += ["--no-access-log", "--lifespan", "off", "--log-level", "warning"]
        self.proc = subprocess.Popen(command, env=self.env, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=2)
                return url
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the bare server exited with {self.proc.returncode}") from None
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("the bare server did not answer within 120 s")

    def __exit__(self, *_exc) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def side_by_side(args: argparse.Namespace, bodies: dict[int, list[bytes]]) -> list[dict]:
    """Floor, bare and service on one cell, `args.rounds` alternating rounds, then the open-loop runs."""
    size, clients = args.sizes[0], args.concurrency[0]
    env = service_env(args, "table")
    env["CSCNN_BARE_MAX_CANDIDATES"] = str(max(args.sizes))
    os.environ.update({k: env[k] for k in ("CSCNN_MODEL_DIR", "CSCNN_TABLE_DIR", "CSCNN_CATALOG")})
    os.environ["CSCNN_BARE_MAX_CANDIDATES"] = env["CSCNN_BARE_MAX_CANDIDATES"]
    ranker, parse = load_bare_ranker()
    rows = []

    def record(server: str, row: dict, mode: str = "closed") -> None:
        row.update(server=server, mode=mode, candidates=size, concurrency=clients)
        rows.append(row)
        print(
            f"{server:8s} {mode:6s} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
            f"{row['requests_per_s']:8.1f} req/s  ({row['requests']} requests, {row['failures']} failed)",
            flush=True,
        )

    with (
        BentoServer(SERVICE, bentoml_env(args.bentoml_home, env), ROOT / "bento", timeout=300) as (service, _r, _l),
        BareServer(bentoml_env(None, env), args.workers) as bare,
    ):
        for url in (service, bare):
            run_loop(load(url, bodies[size], 1, args.warmup, 60))
        in_process(ranker, parse, bodies[size], args.warmup)
        for _ in range(args.rounds):
            record("floor", in_process(ranker, parse, bodies[size], args.requests))
            for server, url in (("bare", bare), ("service", service)):
                record(server, run_loop(load(url, bodies[size], clients, args.requests, args.seconds)))
        for server, url in (("bare", bare), ("service", service)):
            best = max(r["requests_per_s"] for r in rows if r["server"] == server)
            record(server, run_loop(open_loop(url, bodies[size], 0.8 * best, args.open_seconds)), mode="open")
    return rows


def side_by_side_markdown(rows: list[dict]) -> str:
    """One line per server and mode: the median round of the closed loop, and the ratios to bare and floor."""

    def median_round(server: str, mode: str) -> dict:
        runs = sorted(
            (r for r in rows if r["server"] == server and r["mode"] == mode), key=lambda r: r["requests_per_s"]
        )
        return runs[len(runs) // 2]

    floor, bare = median_round("floor", "closed"), median_round("bare", "closed")
    lines = [
        "| server | loop | p50 ms | p99 ms | p99/p50 | req/s | ÷ bare | ÷ floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server, mode in (
        ("floor", "closed"),
        ("bare", "closed"),
        ("service", "closed"),
        ("bare", "open"),
        ("service", "open"),
    ):
        r = median_round(server, mode)
        loop = "closed" if mode == "closed" else f"open, {r['offered_per_s']:,.0f}/s offered"
        lines.append(
            f"| {server} | {loop} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p99_ms'] / r['p50_ms']:.1f} | "
            f"{r['requests_per_s']:,.0f} | {r['requests_per_s'] / bare['requests_per_s']:.2f} | "
            f"{r['requests_per_s'] / floor['requests_per_s']:.2f} |"
        )
    return "\n".join(lines)


def run_loop(coroutine):
    """Run the client on uvloop when it is installed (it comes with BentoML's uvicorn), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def service_env(args: argparse.Namespace, variant: str) -> dict[str, str]:
    return {
        "CSCNN_MODEL_DIR": str(args.model.resolve()),
        "CSCNN_TABLE_DIR": str(args.table.resolve()),
        "CSCNN_CATALOG": str((args.data / schema.ITEMS_FILE).resolve()),
        "CSCNN_IMAGES_DIR": str((args.data / schema.IMAGES_DIR).resolve()) if variant == "cnn" else "",
        "CSCNN_SET": f"serve.poll_seconds=0 serve.max_candidates={max(args.sizes)}",
        "CSCNN_TORCH_THREADS": str(args.torch_threads),
        "CSCNN_SERVE_WORKERS": str(args.workers),
        "BENTOML_HOME": str(args.bentoml_home),
    }


def run_variant(args: argparse.Namespace, variant: str, bodies: dict[int, list[bytes]]) -> tuple[float, list[dict]]:
    env = service_env(args, variant)
    rows = []
    with BentoServer(SERVICE, bentoml_env(args.bentoml_home, env), ROOT / "bento", timeout=300) as (url, ready, _log):
        for size in args.sizes:
            run_loop(load(url, bodies[size], 1, args.warmup, 60, args.client))
            for concurrency in args.concurrency:
                requests = args.requests if variant == "table" else args.cnn_requests
                row = run_loop(load(url, bodies[size], concurrency, requests, args.seconds, args.client))
                row.update(variant=variant, candidates=size, concurrency=concurrency)
                rows.append(row)
                print(
                    f"{variant:5s} {size:5d} candidates  c={concurrency}  p50 {row['p50_ms']:8.2f} ms  "
                    f"p99 {row['p99_ms']:8.2f} ms  {row['requests_per_s']:8.1f} req/s  ({row['requests']} requests)",
                    flush=True,
                )
    return ready, rows


def markdown(rows: list[dict], sizes: list[int], concurrency: list[int]) -> str:
    table = {(r["variant"], r["candidates"], r["concurrency"]): r for r in rows}
    lines = [
        "| candidates | concurrency | table p50 ms | table p99 ms | table req/s | CNN p50 ms | CNN p99 ms | CNN req/s "
        "| CNN/table p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        for clients in concurrency:
            t, c = table[("table", size, clients)], table.get(("cnn", size, clients))
            cnn = (
                f"{c['p50_ms']:,.1f} | {c['p99_ms']:,.1f} | {c['requests_per_s']:,.1f} | "
                f"{c['p50_ms'] / t['p50_ms']:,.0f}x"
                if c
                else "- | - | - | -"
            )
            base = f"{t['p50_ms']:.2f} | {t['p99_ms']:.2f} | {t['requests_per_s']:,.0f}"
            lines.append(f"| {size} | {clients} | {base} | {cnn} |")
    return "\n".join(lines)


def machine(args: argparse.Namespace) -> dict:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "service_torch_threads": args.torch_threads,
        "service_workers": args.workers,
        "client": args.client,
        "load_average_1_5_15_after": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "small", help="world folder")
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "small" / "cscnn", help="checkpoint")
    parser.add_argument("--table", type=Path, default=ROOT / "artifacts" / "small" / "embeddings", help="its table")
    parser.add_argument("--requests", type=int, default=2000, help="requests per cell (table variant)")
    parser.add_argument("--cnn-requests", type=int, default=200, help="requests per cell (CNN variant)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time cap per cell")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests per candidate count")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads in the service")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (CSCNN_SERVE_WORKERS)")
    parser.add_argument("--client", default="raw", choices=["raw", "httpx"], help="HTTP client (see RawPost)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="candidates per request")
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY), help="concurrent clients")
    parser.add_argument("--side-by-side", action="store_true", help="floor, bare and service on one cell")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--side-by-side)")
    parser.add_argument("--open-seconds", type=float, default=10.0, help="open-loop run length (--side-by-side)")
    parser.add_argument("--bentoml-home", type=Path, default=Path("/tmp/cscnn-bench-bentoml"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    if args.side_by_side:
        args.sizes = args.sizes if args.sizes != list(SIZES) else [200]
        args.concurrency = args.concurrency if args.concurrency != list(CONCURRENCY) else [8]
    bodies = {size: payloads(args.data, size, 64, rng) for size in args.sizes}
    if args.side_by_side:
        rows = side_by_side(args, bodies)
        print()
        print(side_by_side_markdown(rows))
        report = {"command": "python benchmarks/serving.py " + " ".join(sys.argv[1:]), "machine": machine(args)}
        report["load_average_1_5_15_before"] = load_before
        report["results"] = rows
        out = args.out.with_name(args.out.stem + "-side-by-side.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nsaved {out}")
        return
    results, ready = [], {}
    for variant in args.variants:
        ready[variant], rows = run_variant(args, variant, bodies)
        results += rows
    print()
    print(markdown(results, args.sizes, args.concurrency))
    report = {
        "command": "python benchmarks/serving.py " + " ".join(sys.argv[1:]),
        "machine": {**machine(args), "load_average_1_5_15_before": load_before},
        "variants": {v: VARIANTS[v] for v in args.variants},
        "seconds_to_ready": ready,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
