"""The service's OpenAPI document (served at GET /docs.json by `cscnn.serving.security.RequestGuard`).

Built from the same pydantic models that validate requests, with every status the service can answer and the
error body it really sends (`ErrorBody`: `detail` is a list). BentoML's own document declares `detail` as a
string, leaves out 401/403/409/413/415/429/503/504, and writes nullable fields in a form OpenAPI 3.0 does not
have; a schema-driven client or fuzzer then disagrees with the service.

What OpenAPI can say, it says: the candidate limit (`maxItems`), each candidate once (`uniqueItems`), `hour`
and `ts` not both (`not: {required: [hour, ts]}`), no unknown fields. Two rules it cannot say, each
`items[].item_id` among the candidates and each once, are in the request's description, in words, and in the
extension `x-cscnn-rules` (`ITEM_RULES`), so a client or a fuzzer can read them; both are answered with 400.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cscnn.serving.schemas import ErrorBody, RankRequest, RankResponse, ReloadResult

OPENAPI_VERSION = "3.0.3"
_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    400: "Malformed request: invalid JSON, a wrong type, a missing or unknown field, a broken rule (`detail`)",
    401: "No bearer token, or not the configured one",
    403: "Admin endpoints are disabled: no token is configured (`CSCNN_ADMIN_TOKEN`)",
    408: "Body not received within `serve.body_timeout_s`, or too slowly (`serve.min_body_bytes_per_s`)",
    409: "The version the registry names could not be loaded; the old one keeps serving",
    413: "Body over the size limit (16 KiB + 512 B per allowed candidate)",
    415: "Body not sent as application/json",
    431: "Request head over `serve.max_header_bytes` (64 KiB)",
    429: "Too many requests in flight (`serve.max_concurrency`)",
    500: "Unexpected error (logged with a traceback and the request id)",
    503: "No model loaded yet",
    504: "Not answered within `serve.request_timeout_s`",
}


ITEM_RULES = [
    {
        "rule": "items-among-candidates",
        "path": "items[].item_id",
        "among": "candidates",
        "description": "every items[].item_id is one of the request's candidates",
    },
    {
        "rule": "items-unique",
        "path": "items[].item_id",
        "description": "each items[].item_id appears once in items",
    },
]


def _oas30(node: Any) -> Any:
    """pydantic's JSON Schema (2020-12) as OpenAPI 3.0: `anyOf [X, null]` -> X + `nullable`, `const` -> `enum`."""
    if isinstance(node, list):
        return [_oas30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _oas30(value) for key, value in node.items() if key != "$defs"}
    variants = node.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        rest = [v for v in variants if v != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" in rest[0]:
            node["allOf"] = rest  # OpenAPI 3.0 ignores siblings of $ref
        elif len(rest) == 1:
            node.update(rest[0])
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _component(model: type[BaseModel], schemas: dict[str, Any], mode: str) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=_REF, mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = _oas30(definition)
    schemas[schema["title"]] = _oas30(schema)
    return {"$ref": _REF.format(model=schema["title"])}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict, statuses: list[int], error: dict) -> dict:
    answers = {"200": {"description": "OK", **ok}}
    for status in statuses:
        answers[str(status)] = {"description": _STATUS_TEXT[status], **_json(error)}
    return answers


def _text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def openapi_document(request_model: type[RankRequest], title: str = "cscnn-ranker", version: str = "1") -> dict:
    """The OpenAPI 3.0 document of the ranking service whose request model is `request_model`."""
    schemas: dict[str, Any] = {}
    request = _component(request_model, schemas, "validation")
    schemas["Context"]["not"] = {"required": ["hour", "ts"]}  # here: BentoML's own schema model has no `not`
    body = schemas[request["$ref"].rsplit("/", 1)[1]]
    body["description"] = (
        "Two rules beyond this schema, answered with 400: "
        + "; ".join(rule["description"] for rule in ITEM_RULES)
        + " (also in `x-cscnn-rules`)."
    )
    body["x-cscnn-rules"] = ITEM_RULES
    error = _component(ErrorBody, schemas, "serialization")
    traffic = [408, 413, 415, 429, 431, 500, 504]
    rank = {
        "operationId": "rank",
        "summary": "Rank the candidates for this user and context, best first",
        "requestBody": {"required": True, **_json(request)},
        "responses": _responses(
            _json(_component(RankResponse, schemas, "serialization")), sorted([400, 503, *traffic]), error
        ),
    }
    reload = {
        "operationId": "reload",
        "summary": "Ask the registry now and swap in the version it names (admin)",
        "security": [{"adminToken": []}],
        "requestBody": {"required": False, **_json({"type": "object"})},
        "responses": _responses(
            _json(_component(ReloadResult, schemas, "serialization")), sorted([400, 401, 403, 409, *traffic]), error
        ),
    }
    probe = {"200": _text("OK")}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "CSCNN click-through-rate ranking. See bento/README.md.",
        },
        "paths": {
            "/rank": {"post": rank},
            "/admin/reload": {"post": reload},
            "/readyz": {"get": {"operationId": "readyz", "responses": {**probe, "503": _text("No model loaded yet")}}},
            "/livez": {"get": {"operationId": "livez", "responses": probe}},
            "/healthz": {"get": {"operationId": "healthz", "responses": probe}},
            "/metrics": {"get": {"operationId": "metrics", "responses": {"200": _text("Prometheus text format")}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the value of CSCNN_ADMIN_TOKEN (a Kubernetes Secret in the cluster)",
                }
            },
        },
    }
