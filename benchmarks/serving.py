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


def run_loop(coroutine):
    """Run the client on uvloop when it is installed (it comes with BentoML's uvicorn), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def run_variant(args: argparse.Namespace, variant: str, bodies: dict[int, list[bytes]]) -> tuple[float, list[dict]]:
    env = {
        "CSCNN_MODEL_DIR": str(args.model.resolve()),
        "CSCNN_TABLE_DIR": str(args.table.resolve()),
        "CSCNN_CATALOG": str((args.data / schema.ITEMS_FILE).resolve()),
        "CSCNN_IMAGES_DIR": str((args.data / schema.IMAGES_DIR).resolve()) if variant == "cnn" else "",
        "CSCNN_SET": f"serve.poll_seconds=0 serve.max_candidates={max(args.sizes)}",
        "CSCNN_TORCH_THREADS": str(args.torch_threads),
        "CSCNN_SERVE_WORKERS": str(args.workers),
        "BENTOML_HOME": str(args.bentoml_home),
    }
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
    parser.add_argument("--bentoml-home", type=Path, default=Path("/tmp/cscnn-bench-bentoml"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    bodies = {size: payloads(args.data, size, 64, rng) for size in args.sizes}
    results, ready = [], {}
    for variant in args.variants:
        ready[variant], rows = run_variant(args, variant, bodies)
        results += rows
    print()
    print(markdown(results, args.sizes, args.concurrency))
    report = {
        "command": "python benchmarks/serving.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "service_torch_threads": args.torch_threads,
            "service_workers": args.workers,
            "client": args.client,
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": os.getloadavg(),
        },
        "variants": {v: VARIANTS[v] for v in args.variants},
        "seconds_to_ready": ready,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
