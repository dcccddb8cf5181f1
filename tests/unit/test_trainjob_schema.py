"""The TrainJob `cscnn.tools.trainjob` renders is valid against the CRD of the Kubeflow Trainer release it
targets (v2.3.0, `trainer.kubeflow.org/v1alpha1`), offline: the CRD's OpenAPI schema is committed in
tests/schemas/ (its source in `x-source`). Unknown fields are refused, as a server with strict field validation
(kubectl's default) refuses them: Trainer v2.2 replaced `podTemplateOverrides` with `runtimePatches`, and a
manifest for the other side of that change must fail here, not on the cluster. The CEL rules of the schema
(`x-kubernetes-validations`) are not evaluated.

To move to another release: write its CRD's v1alpha1 (or newer) openAPIV3Schema, without descriptions, as
tests/schemas/kubeflow-trainer-<release>-trainjob-<version>.json, update `x-source`, and TRAINER_RELEASE."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from cscnn import cluster
from cscnn.config import load_config
from cscnn.tools import trainjob
from cscnn.training import launch

TRAINER_RELEASE = "v2.3.0"
SCHEMA_FILE = Path(__file__).parents[1] / "schemas" / f"kubeflow-trainer-{TRAINER_RELEASE}-trainjob-v1alpha1.json"


def _strict(schema: dict) -> dict:
    """Every object with declared properties refuses others, unless the CRD keeps unknown fields there."""
    schema = copy.deepcopy(schema)

    def visit(node: object) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    source = schema["x-source"]
    assert (source["release"], source["crd_version"]) == (TRAINER_RELEASE, trainjob.VERSION)
    assert source["served"] is True
    return jsonschema.Draft7Validator(_strict(schema))


def _manifest(tmp_path: Path, overrides: list[str]) -> dict:
    cfg = load_config("tiny", overrides=overrides)
    args = launch.worker_args(tmp_path / "world", cfg, tmp_path / "out", until="2026-01-04")
    return trainjob.manifest("cscnn-train-x", "ml", cfg, args, env={"CSCNN_STATE": cluster.STATE_MOUNT})


@pytest.mark.parametrize("overrides", [["train.nodes=4", "train.workers=8", "train.gpus=8"], ["train.gpus=0"]])
def test_the_rendered_trainjob_is_valid_for_the_supported_release(validator, tmp_path, overrides):
    body = _manifest(tmp_path, overrides)
    assert body["apiVersion"] == f"{trainjob.GROUP}/{trainjob.VERSION}"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, "\n".join(errors)


def test_a_field_of_another_release_is_refused(validator, tmp_path):
    body = _manifest(tmp_path, ["train.gpus=1"])
    body["spec"]["podTemplateOverrides"] = body["spec"].pop("runtimePatches")  # Trainer before v2.2
    assert any("podTemplateOverrides" in e.message for e in validator.iter_errors(body))
    body = _manifest(tmp_path, ["train.gpus=1"])
    body["spec"]["trainer"]["numNode"] = 2  # a misspelt field is refused too
    assert any("numNode" in e.message for e in validator.iter_errors(body))
