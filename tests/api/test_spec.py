"""The OpenAPI spec: served, valid OpenAPI 3.1, and complete (every route, every problem type)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route, WebSocketRoute

import acpd.daemon
from acpd.daemon import acp_http, openapi
from acpd.daemon.app import create_app
from acpd.daemon.lazy_routes import LazyRoutes
from acpd.daemon.manager import SessionManager
from acpd.errors import AcpdError

pytestmark = pytest.mark.anyio

NOT_OVER_HTTP = {"config-error", "install-failed", "request-cancelled"}
"""Kinds of error no HTTP route answers with: a bad config or token stops ``acpd serve`` before it
listens, a failed install ends the install's SSE stream (its status is already 200), and a cancelled
request is the ACP face's (JSON-RPC)."""


async def test_the_spec_is_served_without_a_token_and_validates_as_openapi_3_1(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    spec = response.json()
    assert spec["openapi"] == "3.1.0"
    validate(spec)


async def test_the_spec_is_built_once_and_kept(anonymous: httpx.AsyncClient) -> None:
    first = await anonymous.get("/v1/openapi.json")
    second = await anonymous.get("/v1/openapi.json")

    assert first.content == second.content
    assert openapi.spec_json() is openapi.spec_json()


async def test_every_route_of_the_app_is_described_in_the_spec(manager: SessionManager) -> None:
    described = {(op.path, op.method.upper()) for op in openapi.OPERATIONS}
    served: set[tuple[str, str]] = set()
    routes = create_app(manager).routes
    for route in [r for group in routes for r in (group.routes if isinstance(group, LazyRoutes) else [group])]:
        if isinstance(route, WebSocketRoute):
            served.add((route.path, "GET"))  # a WebSocket opens with a GET
        else:
            assert isinstance(route, Route)
            served |= {(route.path, method) for method in route.methods or () if method != "HEAD"}

    assert served - described == set(), "a route without its schema: describe it in acpd.daemon.operations.OPERATIONS"
    assert described - served == set()


def test_every_documented_model_and_reference_resolves() -> None:
    spec = openapi.build_spec()
    schemas = spec["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))

    assert refs - set(schemas) == set()
    for op in openapi.OPERATIONS:
        for name in (op.body, op.answer):
            assert name is None or name in schemas, (op.operation_id, name)


def test_every_problem_type_the_daemon_can_raise_is_documented() -> None:
    raised = {cls.kind for cls in _subclasses(AcpdError)} | {AcpdError.kind}

    assert raised - NOT_OVER_HTTP - set(openapi.PROBLEMS) == set()
    assert acp_http.AcpNotFound.kind in openapi.PROBLEMS


def test_every_problem_type_written_into_the_daemon_code_is_documented() -> None:
    """Problems the daemon answers without an error class: the edge's refusals, the router's, CORS."""
    source = "\n".join(p.read_text() for p in Path(acpd.daemon.__file__).parent.glob("*.py"))
    written = set(re.findall(r'(?:problem\(\d+, |return \d+, )"([a-z-]+)"', source))
    from acpd.daemon.http_protocol import KINDS
    from acpd.daemon.problems import HTTP_KINDS

    assert written, "the pattern no longer finds the daemon's problems: update this test"
    assert (written | set(HTTP_KINDS.values()) | set(KINDS.values())) - set(openapi.PROBLEMS) == set()


def test_each_operation_documents_its_refusals_by_status() -> None:
    spec = openapi.build_spec()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                types = response["content"]["application/problem+json"]["schema"]["allOf"][1]["properties"]["type"]
                for problem_type in types["enum"]:
                    kind = problem_type.removeprefix("urn:acpd:problem:")
                    assert openapi.PROBLEMS[kind][0] == int(status), (method, path, kind)


def _subclasses(cls: type[AcpdError]) -> list[type[AcpdError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
