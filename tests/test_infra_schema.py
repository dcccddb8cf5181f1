"""Every object the kustomize targets of infra/ render is valid against the Kubernetes schema of its kind, for
the Kubernetes version the manifests support (KUBERNETES below), offline: the schemas are committed in
tests/schemas/kubernetes-<version>-strict.json (their source in `x-source`; `extract_kubernetes.py` there
rewrites the file for another version). The schemas are the "strict" ones: unknown fields are refused, as the
API server refuses them with strict field validation (kubectl's default), so a misspelt or misplaced field
fails here, not at `kubectl apply`. A rendered kind with no committed schema fails too.

What a schema cannot say is not checked here: server-side defaulting, admission, quotas, or that the image
exists (tests/test_infra.py checks the structure the service relies on).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from tests.test_infra import ALL, render

KUBERNETES = "v1.37.0"
SCHEMA_FILE = Path(__file__).parent / "schemas" / f"kubernetes-{KUBERNETES}-strict.json"


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


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: render(target) for target in ALL}


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
