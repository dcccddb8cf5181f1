"""The ranking service at four levels: the library (`cscnn.serving`: schemas, ranker,
sources, hotswap), the service class in-process, the ASGI
app (validation, hot swap), and one real `bentoml serve` of the built bento (the pipeline's smoke check).

Two tiny models are registered in a temporary MLflow registry; version 1 starts as champion.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from cscnn.config import ServeConfig
from cscnn.data.io import open_world
from cscnn.serving.hotswap import ModelHolder, NotReadyError
from cscnn.serving.ranker import load_ranker
from cscnn.serving.schemas import Context, RankRequest, User, max_body_bytes, request_model
from cscnn.serving.sources import RegistrySource
from cscnn.state import State
from cscnn.tools import model_registry
from cscnn.training.checkpoint import load_checkpoint
from cscnn.training.embed import export_table
from cscnn.training.features import encode, feature_frame, image_bank
from cscnn.training.train import train

ROOT = Path(__file__).parents[2]
MAX_CANDIDATES = 50
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVING_MODULES = sorted(p.name for p in (ROOT / "src" / "cscnn" / "serving").glob("*.py"))
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Registry, BentoML store and service settings in a temporary folder, for the whole module."""
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "CSCNN_STATE": str(root / "state"),
            "BENTOML_HOME": str(root / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "CSCNN_PROFILE": "tiny",
            "CSCNN_SET": f"serve.max_candidates={MAX_CANDIDATES} serve.poll_seconds=0.1",
            "CSCNN_ADMIN_TOKEN": ADMIN_TOKEN,  # read when bento/service.py is imported
        }.items():
            mp.setenv(name, value)
        for name in ("CSCNN_MODEL_DIR", "CSCNN_MODEL_VERSION", "CSCNN_MODEL_ALIAS", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        threads = torch.get_num_threads()
        yield root
        torch.set_num_threads(threads)  # the service sets its own


@pytest.fixture(scope="module")
def versions(tiny_with, env, tiny_world) -> dict[str, model_registry.ModelRef]:
    """Two registered versions (different seeds), each with its table and catalogue; v1 is champion."""
    world = open_world(tiny_world)
    refs = {}
    for seed in (0, 1):
        checkpoint, table = env / f"model{seed}", env / f"table{seed}"
        cfg = tiny_with(f"train.seed={seed}", "train.epochs=1")
        train(world, cfg, out=checkpoint, progress=False)
        export_table(checkpoint, tiny_world, table)  # writes the catalogue next to the vectors
        ref = model_registry.log_candidate(checkpoint, {"auc": 0.6}, {"seed": seed}, data_version=f"seed{seed}")
        ref = model_registry.attach_embeddings(ref, table, "full")
        refs[ref.version] = ref
    assert sorted(refs) == ["1", "2"] and refs["1"].fingerprint != refs["2"].fingerprint
    model_registry.promote(refs["1"])
    return refs


@pytest.fixture
def champion_v1(versions):
    model_registry.promote(versions["1"])
    return versions["1"]


@pytest.fixture(scope="module")
def service(env):
    """bento/service.py, imported after the environment is set (it reads the candidate limit at import)."""
    spec = importlib.util.spec_from_file_location("cscnn_bento_service", ROOT / "bento" / "service.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # BentoML resolves the API's annotations through the module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def app_client(service, versions):
    """One ASGI app for the module (BentoML registers its request metrics once per process)."""
    from starlette.testclient import TestClient

    with TestClient(service.RankingService.to_asgi()) as test_client:
        yield test_client


@pytest.fixture
def client(app_client, champion_v1):
    assert app_client.post("/admin/reload", json={}, headers=ADMIN).json()["model"]["version"] == "1"
    return app_client


def request_body(candidates: list[str], **extra) -> dict:
    return {
        "user": {"id": "u00001", "gender": "f"},
        "context": {"device": "mobile", "hour": 9},
        "candidates": candidates,
        **extra,
    }


# --- the library ------------------------------------------------------------------------------------------------


def test_ranker_flags_every_fallback(env, versions) -> None:
    checkpoint_dir, table_dir = model_registry.fetch(versions["1"])
    ranker = load_ranker(checkpoint_dir, table_dir)
    _model, encoder, _cfg, _card = load_checkpoint(checkpoint_dir)
    known_item, known_user = encoder.vocabs["item_id"][0], encoder.vocabs["user_id"][0]
    category = encoder.vocabs["category"][0]
    request = RankRequest(
        user=User(id="someone-new", age_group="25-34"),
        context=Context(device="mobile", hour=3),
        candidates=[known_item, "brand-new-ad", "described-ad"],
        items=[{"item_id": "described-ad", "category": category, "price": 12.5}],
    )
    response = ranker.rank(request)
    flags = {item["item_id"]: set(item["flags"]) for item in response.items}
    assert flags[known_item] == set()
    assert flags["brand-new-ad"] == {"not_in_catalogue", "visual_fallback", "unseen_item_id"}
    assert flags["described-ad"] == {"request_features", "visual_fallback", "unseen_item_id"}
    assert response.user_known is False
    scores = [item["score"] for item in response.items]
    assert scores == sorted(scores, reverse=True)

    features = ranker.features(request)
    np.testing.assert_allclose(features.visual[1], ranker.table.category_vectors[0])  # global mean
    np.testing.assert_allclose(features.visual[2], ranker.table.category_vectors[1])  # its category's mean
    np.testing.assert_allclose(features.dense[:, 0], [features.dense[0, 0], ranker.mean_log_price, np.log1p(12.5)])
    assert ranker.rank(request.model_copy(update={"user": User(id=known_user)})).user_known is True

    # the first deep layer from precomputed item shares scores as the whole network does, fallbacks included
    with torch.no_grad():
        whole = ranker.model.score(
            torch.from_numpy(features.sparse), torch.from_numpy(features.dense), torch.from_numpy(features.visual)
        )
    np.testing.assert_allclose(ranker.scores(features), torch.sigmoid(whole).numpy(), rtol=0, atol=1e-6)


def test_request_model_names_each_problem() -> None:
    model = request_model(3)
    ok = request_body(["a", "b"])
    assert model.model_validate(ok).candidates == ["a", "b"]
    for body, message in [
        (request_body(["a", "b", "c", "d"]), "at most 3 items"),
        (request_body(["a", "b", "a"]), "candidates at positions \\[2\\] repeat an earlier id"),
        ({**ok, "context": {"device": "mobile", "hour": 9, "ts": "2026-01-01T00:00:00Z"}}, "either 'hour' or 'ts'"),
    ]:
        with pytest.raises(ValidationError, match=message):
            model.model_validate_json(json.dumps(body))  # as the service parses a body


def test_holder_is_not_ready_without_champion_and_keeps_serving_when_a_reload_fails(env, versions) -> None:
    holder = ModelHolder(RegistrySource(alias="no-such-alias"), ServeConfig())
    assert holder.reload().model is None and not holder.ready
    with pytest.raises(NotReadyError):
        holder.rank(RankRequest.model_validate(request_body(["a"])))

    errors: list[Exception] = []
    holder = ModelHolder(RegistrySource(version="1"), ServeConfig(poll_seconds=0.05), on_error=errors.append)
    holder.reload()
    broken = model_registry.log_candidate(model_registry.fetch(versions["2"])[0], {}, {}, data_version="no-table")
    holder.source = RegistrySource(version=broken.version)  # a version without an embedding table
    holder.start_polling()
    try:
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        holder.stop()
    assert errors and "no embedding table" in str(errors[0])
    assert holder.current.served.version == "1"


# --- the service class, in-process ---------------------------------------------------------------------------------


def test_service_class_ranks_in_process(service, champion_v1) -> None:
    svc = service.RankingService()
    try:
        assert svc.__is_ready__()
        response = asyncio.run(
            svc.rank(user=User(id="u00001"), context=Context(device="mobile", hour=9), candidates=["i000001", "x"])
        )
        assert response.model.version == "1" and response.model.fingerprint == champion_v1.fingerprint
        assert response.items[-1]["item_id"] == "x"  # the unknown ad scores with the defaults
        assert svc.reload().swapped is False
    finally:
        svc.stop_polling()


def test_service_scores_equal_the_offline_model(env, tiny_world, service, champion_v1) -> None:
    """Every request of the held-out day, scored by the service, equals `CTRModel.forward` (CNN included)
    on the same impressions encoded offline at position 1."""
    checkpoint_dir, _table = model_registry.fetch(champion_v1)
    model, encoder, cfg, card = load_checkpoint(checkpoint_dir)
    world = open_world(tiny_world)
    frame = feature_frame(world, world.impressions(card["days"]["test"]).assign(position=1))
    data = encode(frame, encoder)
    with torch.no_grad():
        offline = model(data.batch(np.arange(len(data))), image_bank(world, encoder, cfg.model.image_size))["y_pred"]

    svc = service.RankingService()
    served = np.empty(len(frame))
    try:
        for _request_id, group in frame.groupby("request_id", sort=False):
            first = group.iloc[0]
            response = asyncio.run(
                svc.rank(
                    user=User(id=first.user_id, age_group=first.age_group, gender=first.gender),
                    context=Context(device=first.device, ts=first.ts.to_pydatetime()),
                    candidates=group["item_id"].tolist(),
                )
            )
            scores = {item["item_id"]: item["score"] for item in response.items}
            served[frame.index.get_indexer(group.index)] = [scores[i] for i in group["item_id"]]
    finally:
        svc.stop_polling()
    assert frame["request_id"].nunique() > 50 and data.cold.any()
    np.testing.assert_allclose(served, offline.numpy(), rtol=1e-4, atol=1e-5)


# --- the ASGI app ----------------------------------------------------------------------------------------------------


BAD_REQUESTS = [
    ("empty list", request_body([]), 400, "at least 1 item"),
    ("too many", request_body([f"i{n}" for n in range(MAX_CANDIDATES + 1)]), 400, f"at most {MAX_CANDIDATES} items"),
    ("id not a string", request_body([1, 2]), 400, "valid string"),
    ("hour as text", {**request_body(["a"]), "context": {"device": "mobile", "hour": "9"}}, 400, "valid integer"),
    ("hour out of range", {**request_body(["a"]), "context": {"device": "mobile", "hour": 24}}, 400, "less than or"),
    ("naive time", {**request_body(["a"]), "context": {"device": "m", "ts": "2026-01-01T10:00:00"}}, 400, "timezone"),
    ("NaN price", request_body(["a"], items=[{"item_id": "a", "category": "c", "price": float("nan")}]), 400, "finite"),
    ("infinite price", request_body(["a"], items=[{"item_id": "a", "category": "c", "price": 1e999}]), 400, "finite"),
    ("negative price", request_body(["a"], items=[{"item_id": "a", "category": "c", "price": -1.0}]), 400, "greater"),
    ("duplicate ids", request_body(["a", "b", "a"]), 400, "positions [2] repeat an earlier id"),
    ("stray features", request_body(["a"], items=[{"item_id": "b", "category": "c"}]), 400, "not among the candidates"),
    ("missing user", {"context": {"device": "m"}, "candidates": ["a"]}, 400, "Field required"),
    ("unknown field", request_body(["a"], candidate_ids=["a"]), 400, "Extra inputs are not permitted"),
    ("not JSON", b"{'candidates': ['a']}", 400, "Invalid JSON"),
    ("not an object", [1, 2], 400, "Input should be an object"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_is_a_4xx_naming_the_problem(client, case, body, status, message) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = client.post("/rank", content=content, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert message in answer.text, answer.text
    assert client.post("/rank", json=request_body(["i000001"])).status_code == 200  # still up


def test_oversized_body_is_413_before_parsing(client) -> None:
    limit = max_body_bytes(MAX_CANDIDATES)
    padded = json.dumps(request_body(["i000001"])).replace("{", "{" + " " * limit, 1)
    answer = client.post("/rank", content=padded, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and f"limit of {limit} bytes" in answer.json()["error"]

    def chunked():  # no Content-Length: counted as it arrives
        yield b'{"candidates": ["'
        yield b"x" * limit
        yield b'"]}'

    chunked_json = {"content-type": "application/json"}  # any other type is refused first (415)
    assert client.post("/rank", content=chunked(), headers=chunked_json).status_code == 413
    assert client.get("/readyz").status_code == 200


def test_health_readiness_and_served_version(client, champion_v1) -> None:
    from prometheus_client import REGISTRY

    assert client.get("/livez").status_code == 200 and client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    labels = {"name": champion_v1.name, "version": "1", "fingerprint": champion_v1.fingerprint}
    labels["embeddings"] = champion_v1.embeddings
    assert REGISTRY.get_sample_value("cscnn_served_model", labels) == 1.0


def test_hot_swap_serves_the_new_champion_and_drops_no_request(client, versions, monkeypatch) -> None:
    """Requests run back to back while `champion` moves to version 2 and the (slowed) load happens: every one
    succeeds, each is scored by exactly one version, and once version 2 answers version 1 never does again."""
    loading = threading.Event()
    original_load = RegistrySource.load

    def slow_load(self, target):
        loading.set()
        time.sleep(0.5)  # requests keep arriving while the new bundle loads
        return original_load(self, target)

    monkeypatch.setattr(RegistrySource, "load", slow_load)
    answers: list[tuple[int, str | None, bool]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answer = client.post("/rank", json=request_body(["i000001", "i000002", "i000003"]))
            version = answer.json()["model"]["version"] if answer.status_code == 200 else None
            answers.append((answer.status_code, version, loading.is_set()))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(0.2)
        model_registry.promote(versions["2"])
        deadline = time.monotonic() + 20
        while not any(version == "2" for _s, version, _l in answers) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        stop.set()
        worker.join()

    statuses = {status for status, _v, _l in answers}
    served = [version for _s, version, _l in answers]
    assert statuses == {200}, statuses
    assert "2" in served and served == sorted(served), "a request was answered by the old version after the swap"
    during_load = sum(version == "1" and during for _s, version, during in answers)
    assert during_load >= 10, f"only {during_load} requests were answered while version 2 loaded"
    assert client.post("/admin/reload", json={}, headers=ADMIN).json()["model"]["version"] == "2"

    model_registry.promote(versions["1"])  # a rollback through the admin endpoint, without waiting for the poll
    monkeypatch.setattr(RegistrySource, "load", original_load)
    reloaded = client.post("/admin/reload", json={}, headers=ADMIN).json()
    assert reloaded["model"]["version"] == "1"
    assert client.post("/rank", json=request_body(["i000001"])).json()["model"]["version"] == "1"


# --- packaging: bentofile, build, one real server ---------------------------------------------------------------------


def test_bentofile_pins_match_the_project_constraints() -> None:
    bentofile = yaml.safe_load((ROOT / "bento" / "bentofile.yaml").read_text())
    constraints = dict(
        line.strip().lower().split("==")
        for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    )
    assert bentofile["python"]["lock_packages"] is False
    for requirement in bentofile["python"]["packages"]:
        name, pinned = requirement.lower().split("==")
        assert constraints.get(name) == pinned, f"{requirement}: constraints.txt has {constraints.get(name)}"


def test_built_bento_serves_a_pinned_version_over_http(env, versions) -> None:
    from cscnn.tools.packaging import build_bento, smoke_check

    build_bento(bentoml_home=env / "bentoml", version="v2")
    built = build_bento(bentoml_home=env / "bentoml", version="v2")  # a retried step replaces its build
    assert built.tag == "cscnn-ranker:v2"
    packed = built.bentoml_home / "bentos" / "cscnn-ranker" / "v2" / "src" / "cscnn" / "serving"
    assert sorted(p.name for p in packed.glob("*.py")) == SERVING_MODULES  # the package folder, not one file
    result = smoke_check(built.tag, version="2", state=State.from_env(), bentoml_home=built.bentoml_home)
    assert result.model["version"] == "2" and result.model["fingerprint"] == versions["2"].fingerprint
    assert len(result.response["items"]) == 6 and result.seconds_to_ready < 60
