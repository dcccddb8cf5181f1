"""The cluster manifests in infra/: render each kustomize overlay with `kubectl kustomize` (offline) and check the
structure the ranking service and the daily loop rely on and their validity against the Kubernetes schemas; and
the Dockerfile's contract with the KFP components.

Nothing here talks to a cluster or builds an image: it checks what would be applied, not that it runs.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from cscnn.cluster import IMAGE, STATE_MOUNT  # the one definition the manifests must agree with

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
OVERLAYS = ("local", "production")
KUBECTL = shutil.which("kubectl")
NAME = "cscnn-ranker"
PORT = 3000
SECRET_ENV = {"CSCNN_ADMIN_TOKEN": ("cscnn-admin-token", "token")}  # variable: (Secret, key)


def render(target: str) -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH: cannot render the kustomize manifests (install kubectl to check infra/)")
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(INFRA / "k8s" / target)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, f"kubectl kustomize {target} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: render(target) for target in ("base", *(f"overlays/{o}" for o in OVERLAYS))}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: list[dict]) -> dict:
    containers = one(docs, "Deployment", NAME)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(docs: list[dict]) -> dict[str, str]:
    """The container's environment as the pod would see it: the ConfigMap(s) of envFrom, then env."""
    ctr = container(docs)
    env: dict[str, str] = {}
    for source in ctr.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in ctr.get("env", []):
        if var["name"] in SECRET_ENV:
            continue  # a Secret's value: not in the manifests (test_admin_token_comes_from_a_secret)
        assert "value" in var, f"{var['name']}: expected a literal value"
        env[var["name"]] = var["value"]
    return env


def named_port(ctr: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in ctr["ports"] if p["name"] == port)


ALL = ["base", *(f"overlays/{o}" for o in OVERLAYS)]


@pytest.mark.parametrize("target", ALL)
def test_deployment_runs_the_bento_with_probes_on_port_3000(rendered, target):
    docs = rendered[target]
    ctr = container(docs)
    assert ctr["image"] == IMAGE  # the same image the pipeline's components run in
    cmdline = [*ctr["command"], *ctr.get("args", [])]
    assert cmdline[:3] == ["bentoml", "serve", "service:RankingService"]
    assert cmdline[cmdline.index("--port") + 1] == str(PORT)
    assert cmdline[cmdline.index("--working-dir") + 1] == "/app/bento"  # where infra/Dockerfile puts bento/
    assert [p["containerPort"] for p in ctr["ports"]] == [PORT]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez"), ("startupProbe", "/livez")):
        get = ctr[probe]["httpGet"]
        assert get["path"] == path, probe
        assert named_port(ctr, get["port"]) == PORT, probe


@pytest.mark.parametrize("target", ALL)
def test_environment_state_volume_and_resources(rendered, target):
    docs = rendered[target]
    ctr = container(docs)
    env = env_of(docs)
    assert env["BENTOML_DO_NOT_TRACK"] == "True"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["MLFLOW_TRACKING_URI"].startswith(("sqlite:///", "http://", "https://"))
    assert env["CSCNN_STATE"] == STATE_MOUNT
    # every CSCNN_* variable set is one the code reads (a typo would be silently ignored)
    sources = "".join(p.read_text() for p in [*(ROOT / "src" / "cscnn").rglob("*.py"), ROOT / "bento" / "service.py"])
    unknown = [name for name in env if name.startswith("CSCNN_") and f'"{name}"' not in sources]
    assert not unknown, f"variables no code reads: {unknown}"

    # CSCNN_STATE is the PersistentVolumeClaim's mount (the model cache, and SQLite without a tracking server)
    pod = one(docs, "Deployment", NAME)["spec"]["template"]["spec"]
    mount = next(m for m in ctr["volumeMounts"] if m["mountPath"] == STATE_MOUNT)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    one(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    # fixed names (no hash suffix), so that the pipeline's steps can mount and read the same ones
    assert volume["persistentVolumeClaim"]["claimName"] == "cscnn-state"
    assert [s["configMapRef"]["name"] for s in ctr["envFrom"]] == ["cscnn-config"]
    assert not mount.get("readOnly", False)

    # CPU only, with requests and limits
    res = ctr["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
    assert not any("gpu" in key for part in res.values() for key in part)
    assert pod["securityContext"]["runAsNonRoot"] is True

    # Prometheus scrapes /metrics on the service port
    notes = one(docs, "Deployment", NAME)["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == PORT


@pytest.mark.parametrize("target", ALL)
def test_service_selects_the_deployments_pods(rendered, target):
    docs = rendered[target]
    deployment = one(docs, "Deployment", NAME)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(docs, "Service", NAME)
    assert service["spec"]["selector"], "a Service without a selector selects nothing"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == PORT
    assert named_port(container(docs), port["targetPort"]) == PORT
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cscnn-ctr", doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_puts_everything_in_one_namespace(rendered, overlay):
    namespaced = [d for d in rendered[f"overlays/{overlay}"] if d["kind"] != "Namespace"]
    assert len({d["metadata"].get("namespace") for d in namespaced}) == 1
    assert namespaced[0]["metadata"].get("namespace")


def test_overlays_differ_as_intended(rendered):
    local, prod = rendered["overlays/local"], rendered["overlays/production"]
    deploy = {name: one(docs, "Deployment", NAME)["spec"] for name, docs in (("local", local), ("prod", prod))}
    assert deploy["local"]["replicas"] == 1
    assert deploy["prod"]["replicas"] >= 2

    # local: the embedded SQLite registry on a node-local volume; production: a tracking server, object storage
    local_env, prod_env = env_of(local), env_of(prod)
    assert local_env["MLFLOW_TRACKING_URI"] == f"sqlite:///{STATE_MOUNT}/mlflow.db"
    assert prod_env["MLFLOW_TRACKING_URI"].startswith(("http://", "https://"))
    assert prod_env["CSCNN_DVC_REMOTE"].startswith(("gs://", "s3://", "azure://"))
    assert one(local, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    prod_pvc = one(prod, "PersistentVolumeClaim")["spec"]
    assert prod_pvc["accessModes"] == ["ReadWriteMany"]  # pipeline steps on CPU and GPU nodes and the service
    assert prod_pvc["storageClassName"]

    # production keeps two pods up through voluntary disruptions, and selects the Deployment's pods
    pdb = one(prod, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] < deploy["prod"]["replicas"]
    assert pdb["selector"]["matchLabels"].items() <= deploy["prod"]["template"]["metadata"]["labels"].items()
    assert not [d for d in local if d["kind"] == "PodDisruptionBudget"]
    assert container(local).get("imagePullPolicy") == "IfNotPresent"  # an image loaded into kind/minikube


def test_dockerfile_contract():
    """What the components and the Deployment assume about the image (it is not built in tests: no Docker)."""
    text = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert '-c requirements/constraints.txt -e ".[pipeline,serve]"' in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert f'"--port", "{PORT}"' in text and f"EXPOSE {PORT}" in text
    assert not re.search(r"(?i)^\s*(ENV|ARG)\s+\S*(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", text, re.M)
    # every COPY source exists and is not left out of the build context by the Dockerfile's ignore file
    ignore = (INFRA / "Dockerfile.dockerignore").read_text()
    copied = [src for line in re.findall(r"^COPY (.+)$", text, re.M) for src in line.split()[:-1]]
    assert "bento/" in copied and "requirements/constraints.txt" in copied
    for src in copied:
        assert (ROOT / src).exists(), src
        assert f"!{src.rstrip('/')}" in ignore, f"{src} is excluded from the build context"


@pytest.mark.parametrize("target", ALL)
def test_admin_token_comes_from_a_secret(rendered, target):
    """The service's admin token is read from a Secret, never written in a manifest or the ConfigMap; the
    Secret is optional: without it the admin endpoints are disabled (403), not open."""
    docs = rendered[target]
    by_name = {var["name"]: var for var in container(docs).get("env", [])}
    for name, (secret, key) in SECRET_ENV.items():
        ref = by_name[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"], ref.get("optional")) == (secret, key, True)
        assert "value" not in by_name[name]
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret's value in the manifests"
    for config in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not set(SECRET_ENV) & set(config.get("data", {})), "a secret in a ConfigMap"


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes schemas: every rendered object is valid against the Kubernetes schema of its kind for the version
# the manifests support (KUBERNETES), offline. The schemas are committed in tests/schemas/kubernetes-<version>-
# strict.json (their source in `x-source`; tests/schemas/extract_kubernetes.py rewrites it for another version).
# They are the "strict" ones: unknown fields are refused, as the API server refuses them with strict field
# validation (kubectl's default), so a misspelt or misplaced field fails here, not at `kubectl apply`; a rendered
# kind with no committed schema fails too. Not checked: server-side defaulting, admission, quotas, the image.
# ---------------------------------------------------------------------------------------------------------------

KUBERNETES = "v1.37.0"
SCHEMA_FILE = Path(__file__).parents[1] / "schemas" / f"kubernetes-{KUBERNETES}-strict.json"


@pytest.fixture(scope="module")
def schemas() -> dict:
    schemas = json.loads(SCHEMA_FILE.read_text())
    assert schemas["x-source"]["kubernetes"] == KUBERNETES
    return schemas


def errors_of(doc: dict, schemas: dict) -> list[str]:
    key = f"{doc.get('apiVersion')}/{doc.get('kind')}"
    if key not in schemas["kinds"]:
        return [f"{key}: no schema committed for this kind (add it to tests/schemas/extract_kubernetes.py)"]
    schema = {**schemas["kinds"][key], "$defs": schemas["$defs"]}
    validator = jsonschema.Draft202012Validator(schema)
    name = doc.get("metadata", {}).get("name")
    return [f"{key} {name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("target", ALL)
def test_every_rendered_object_is_valid_for_the_supported_kubernetes(rendered, schemas, target):
    docs = rendered[target]
    assert docs, f"{target} rendered nothing"
    problems = [problem for doc in docs for problem in errors_of(doc, schemas)]
    assert not problems, "\n".join(problems)


def test_unknown_misplaced_and_mistyped_fields_are_refused(rendered, schemas):
    deployment = next(d for d in rendered["overlays/production"] if d["kind"] == "Deployment")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert any("imagePullPolcy" in e for e in errors_of(misspelt, schemas))
    misplaced = copy.deepcopy(deployment)
    misplaced["spec"]["resources"] = {"limits": {"cpu": "1"}}  # belongs to a container, not the Deployment
    assert any("resources" in e for e in errors_of(misplaced, schemas))
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["replicas"] = "two"
    assert any("replicas" in e for e in errors_of(mistyped, schemas))
    unknown_kind = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert errors_of(unknown_kind, schemas) and "no schema" in errors_of(unknown_kind, schemas)[0]
