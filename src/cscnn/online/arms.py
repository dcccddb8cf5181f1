"""The arms of an experiment: the real ranking service over HTTP, and the oracle and random baselines.

An arm spec (`cscnn simulate --arm NAME=SPEC`) is one of:

    champion | alias:NAME     a ranking service started here on the registry version the alias names
    version:N                 a ranking service started here on registry version N (pinned)
    local:CHECKPOINT:TABLE    a ranking service started here on local folders (checkpoint, its embedding table)
    http://127.0.0.1:PORT     a ranking service already running on this machine
    oracle                    rank by the world's true click probability (the ceiling), in process
    random                    a random order, in process

Guards: traffic goes only to a service on this machine (a loopback address: anything else is refused before
a request is sent); every request has a timeout; a service error is a failed request in the report, never a
silent drop.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from cscnn.config import OnlineConfig
from cscnn.errors import CSCNNError
from cscnn.online.click_model import DEVICE_NAMES, WorldTruth
from cscnn.online.traffic import RankAnswer, Requests, oracle_order, random_order
from cscnn.state import State

BUILT_IN = ("oracle", "random")
LOCAL_HOSTS = ("localhost",)


class ArmSpecError(CSCNNError):
    """An arm spec that names nothing this command can serve, or a service that is not on this machine."""


def check_local_url(url: str) -> str:
    """`url` if it points at this machine (loopback), else ArmSpecError: the simulator never sends traffic
    elsewhere."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ArmSpecError(f"{url!r} is not an http(s) URL")
    host = parsed.hostname
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host in LOCAL_HOSTS
    if not local:
        raise ArmSpecError(f"{url!r}: the simulator sends traffic only to a service on this machine (loopback)")
    return url.rstrip("/")


@dataclass
class BaselineRanker:
    """The oracle or random order, in process (no service)."""

    name: str
    truth: WorldTruth
    kind: str
    seed: int = 0

    def rank(self, requests: Requests, rows: np.ndarray) -> list[RankAnswer]:
        sub = _subset(requests, rows)
        if self.kind == "oracle":
            order = oracle_order(self.truth, sub)
        else:
            order = random_order(sub, np.random.default_rng([self.seed, len(rows)]))
        ranked = np.take_along_axis(sub.candidates, order, axis=1)
        return [RankAnswer(ranked[i], version=self.kind, latency_ms=0.0) for i in range(len(rows))]


class HttpRanker:
    """The ranking service at `url` (on this machine), `concurrency` requests in flight."""

    def __init__(self, name: str, url: str, truth: WorldTruth, concurrency: int = 4, timeout: float = 10.0) -> None:
        self.name, self.url, self.truth = name, check_local_url(url), truth
        self.concurrency, self.timeout = max(1, concurrency), timeout
        self._row_of = {item_id: row for row, item_id in enumerate(truth.item_ids.tolist())}
        users = truth.population.users
        self._user = list(zip(users["user_id"], users["age_group"], users["gender"], strict=True))

    def body(self, requests: Requests, r: int) -> dict:
        user_id, age_group, gender = self._user[requests.user[r]]
        return {
            "user": {"id": user_id, "age_group": age_group, "gender": gender},
            "context": {"device": DEVICE_NAMES[requests.device[r]], "ts": requests.ts[r].isoformat()},
            "candidates": self.truth.item_ids[requests.candidates[r]].tolist(),
        }

    def rank(self, requests: Requests, rows: np.ndarray) -> list[RankAnswer]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        # trust_env=False: no HTTP(S)_PROXY from the environment, so the traffic stays on this machine
        client = httpx.Client(base_url=self.url, timeout=self.timeout, limits=limits, trust_env=False)
        with client, ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(client, requests, int(r)), rows))

    def _one(self, client: httpx.Client, requests: Requests, r: int) -> RankAnswer:
        body = self.body(requests, r)
        started = time.perf_counter()
        try:
            answer = client.post("/rank", json=body)
        except httpx.HTTPError as exc:
            return RankAnswer(None, error=f"{type(exc).__name__}", latency_ms=_ms(started))
        latency = _ms(started)
        if answer.status_code != 200:
            return RankAnswer(None, error=f"HTTP {answer.status_code}", latency_ms=latency)
        try:
            payload = answer.json()
            ids = [item["item_id"] for item in payload["items"]]
            version = str(payload["model"]["version"])
            if not all(isinstance(i, str) for i in ids):
                raise TypeError("item ids must be strings")
        except (ValueError, KeyError, TypeError):
            return RankAnswer(None, error="malformed answer", latency_ms=latency)
        if sorted(ids) != sorted(body["candidates"]):
            return RankAnswer(None, version=version, error="answer is not the candidates", latency_ms=latency)
        return RankAnswer(np.fromiter(map(self._row_of.__getitem__, ids), np.intp, len(ids)), version, "", latency)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1e3


def _subset(requests: Requests, rows: np.ndarray) -> Requests:
    return Requests(
        requests.day,
        requests.request_id[rows],
        requests.user[rows],
        requests.device[rows],
        requests.ts[rows],
        requests.candidates[rows],
    )


@dataclass(frozen=True)
class ArmSpec:
    name: str
    spec: str

    @classmethod
    def parse(cls, text: str) -> ArmSpec:
        name, sep, spec = text.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ArmSpecError(f"--arm {text!r}: expected NAME=SPEC, e.g. cscnn=champion or baseline=version:3")
        name, spec = name.strip(), spec.strip()
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ArmSpecError(f"arm name {name!r}: letters, digits, '-' and '_' only")
        kind = spec.split(":", 1)[0]
        if spec not in (*BUILT_IN, "champion") and kind not in ("alias", "version", "local", "http", "https"):
            raise ArmSpecError(
                f"--arm {text!r}: SPEC is champion, alias:NAME, version:N, local:CHECKPOINT:TABLE, "
                "http://127.0.0.1:PORT, oracle or random"
            )
        if kind in ("http", "https"):
            check_local_url(spec)
        if kind == "local" and len(spec.split(":")) != 3:
            raise ArmSpecError(f"--arm {text!r}: local:CHECKPOINT_DIR:TABLE_DIR")
        return cls(name, spec)

    def service_env(self, state_root: Path) -> dict[str, str] | None:
        """The environment of the service this arm starts (None: it starts none)."""
        if self.spec in BUILT_IN or self.spec.startswith(("http:", "https:")):
            return None
        base = {"CSCNN_STATE": str(state_root), "CSCNN_MODEL_DIR": "", "CSCNN_MODEL_VERSION": ""}
        if self.spec == "champion":
            return {**base, "CSCNN_MODEL_ALIAS": "champion"}
        kind, _, rest = self.spec.partition(":")
        if kind == "alias":
            return {**base, "CSCNN_MODEL_ALIAS": rest}
        if kind == "version":
            return {**base, "CSCNN_MODEL_VERSION": rest}
        checkpoint, table = rest.split(":")
        for folder in (checkpoint, table):
            if not Path(folder).is_dir():
                raise ArmSpecError(f"arm {self.name}: {folder} is not a folder")
        return {"CSCNN_MODEL_DIR": str(Path(checkpoint).resolve()), "CSCNN_TABLE_DIR": str(Path(table).resolve())}


@contextlib.contextmanager
def open_arms(
    specs: list[ArmSpec],
    truth: WorldTruth,
    state: State,
    profile: str,
    online: OnlineConfig,
) -> Iterator[dict[str, object]]:
    """The rankers of `specs`, with the services they need started (real `bentoml serve` of bento/, on a free
    loopback port each) for the block, and stopped after it, errors included."""
    from cscnn import project
    from cscnn.tools.packaging import SERVICE, BentoServer, bentoml_env

    rankers: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        for spec in specs:
            if spec.spec in BUILT_IN:
                rankers[spec.name] = BaselineRanker(spec.name, truth, spec.spec, online.seed)
                continue
            env = spec.service_env(state.root)
            url = spec.spec
            if env is not None:
                env = {
                    **env,
                    "CSCNN_PROFILE": profile,
                    "CSCNN_SET": f"serve.max_candidates={online.candidates} serve.poll_seconds=2",
                }
                state.servers.mkdir(parents=True, exist_ok=True)
                env = bentoml_env(state.bentoml_home, env)
                server = BentoServer(SERVICE, env, project.bento_dir(), 180.0, record_dir=state.servers)
                url, _, _ = stack.enter_context(server)
            rankers[spec.name] = HttpRanker(spec.name, url, truth, online.concurrency, online.timeout_s)
        yield rankers
