"""Daemon layer: the OpenAPI 3.1 description of the HTTP face, generated from the ``acpd.api``
models and the operations table (``operations``).

The spec is built once, at the first ``GET /v1/openapi.json``, and kept: pydantic, the models and
ACP's schema package are not imported at start-up. No routing here.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from acpd import __version__

from .operations import EDGE, OPERATIONS, PROBLEMS, SSE_NOTE, TOKEN, Op, Param
from .problems import MEDIA_TYPE, PROBLEM_TYPE_PREFIX

__all__ = ["OPERATIONS", "PROBLEMS", "build_spec", "spec_json"]

REF: Final = "#/components/schemas/{model}"


def spec_json() -> bytes:
    """The spec as JSON bytes, built at the first call and kept."""
    return _spec_json()


@cache
def _spec_json() -> bytes:
    from acpd.protocol import jsonio

    return jsonio.dumps(build_spec())


def build_spec() -> dict[str, Any]:
    schemas = component_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "acpd",
            "version": __version__,
            "description": (
                "A local daemon that puts many coding agents behind one ACP surface. Every route but the "
                "open ones (health, this spec, /docs) needs `Authorization: Bearer <token>`; every error is "
                "`application/problem+json` with a stable `type`, `urn:acpd:problem:<kind>`."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:4520"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": name}
            for name in ("daemon", "agents", "sessions", "turns", "events", "permissions", "audit", "acp")
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "x-problem-types": {PROBLEM_TYPE_PREFIX + kind: {"status": s, "when": w} for kind, (s, w) in PROBLEMS.items()},
    }


def component_schemas() -> dict[str, Any]:
    """Every model's JSON schema, its nested models hoisted to ``components/schemas``."""
    from pydantic import TypeAdapter
    from pydantic.json_schema import JsonSchemaMode, models_json_schema

    from acpd.api import events, models, requests
    from acpd.api.events import ContentBlock

    modes: tuple[tuple[Any, JsonSchemaMode], ...] = (
        (requests, "validation"),
        (models, "serialization"),
        (events, "serialization"),
    )
    named = [(getattr(module, name), mode) for module, mode in modes for name in _public_models(module)]
    _, top = models_json_schema(named, ref_template=REF, by_alias=True)
    schemas: dict[str, Any] = top.get("$defs", {})
    block = TypeAdapter(ContentBlock).json_schema(ref_template=REF)
    schemas.update(block.pop("$defs", {}))
    schemas["ContentBlock"] = block
    schemas["Problem"]["properties"]["type"]["examples"] = [PROBLEM_TYPE_PREFIX + "invalid-input"]
    return schemas


def _public_models(module: Any) -> list[str]:
    from pydantic import BaseModel

    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    )


def _operation(op: Op) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {**_success(op), **op.extra_responses, **_problem_responses(op)},
    }
    if op.description:
        operation["description"] = op.description
    if op.params:
        operation["parameters"] = [_parameter(p) for p in op.params]
    if op.body:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {media: _body_schema(op.body, media) for media in op.body_media},
        }
    if op.open:
        operation["security"] = []
    return operation


def _body_schema(model: str, media: str) -> dict[str, Any]:
    if media == "application/jsonl":
        return {
            "schema": {
                "type": "string",
                "description": f"JSON lines: {model} without events, then one EventRecord a line",
            }
        }
    return {"schema": {"$ref": REF.format(model=model)}}


def _success(op: Op) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": op.summary}
    content: dict[str, Any] = {}
    if op.answer is not None:
        content["application/json"] = {"schema": {"$ref": REF.format(model=op.answer)}}
    elif op.operation_id == "openapi":
        content["application/json"] = {"schema": {"type": "object"}}
    for media in (op.media, *op.also_media) if op.media else ():
        content[media] = {"schema": {"type": "string"}}
    sse_model = SSE_NOTE.get(op.path)
    if sse_model is not None and op.method in ("get", "post"):
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": f"SSE; each data: line is one {sse_model}"},
            "x-sse-data": {"$ref": REF.format(model=sse_model)},
        }
    if content:
        answer["content"] = content
    if op.answer_headers:
        answer["headers"] = op.answer_headers
    return {str(op.ok): answer}


def _parameter(param: Param) -> dict[str, Any]:
    described: dict[str, Any] = {"name": param.name, "in": param.where, "schema": param.schema}
    if param.required or param.where == "path":
        described["required"] = True
    if param.description:
        described["description"] = param.description
    return described


def _problem_responses(op: Op) -> dict[str, Any]:
    kinds = [*EDGE, *(() if op.open else TOKEN), *op.problems]
    by_status: dict[int, list[str]] = {}
    for kind in dict.fromkeys(kinds):
        by_status.setdefault(PROBLEMS[kind][0], []).append(kind)
    return {str(status): _problem_response(kinds) for status, kinds in sorted(by_status.items())}


def _problem_response(kinds: list[str]) -> dict[str, Any]:
    types = [PROBLEM_TYPE_PREFIX + kind for kind in kinds]
    schema = {
        "allOf": [
            {"$ref": REF.format(model="Problem")},
            {"type": "object", "properties": {"type": {"enum": types}}},
        ]
    }
    return {
        "description": "; ".join(f"{kind}: {PROBLEMS[kind][1]}" for kind in kinds),
        "content": {MEDIA_TYPE: {"schema": schema}},
    }
