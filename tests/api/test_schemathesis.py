"""The spec driven against a real daemon (schemathesis): for every operation, generated requests,
valid and not, never get a 5xx, and every answer conforms to the spec (status, content type,
headers, body schema, the problem ``type`` listed for its status).

Left out: the two endless SSE streams (``/events/stream``, ``GET /v1/acp/{id}``), which by design
never end while their session or connection lives, so a generated request would hang there; their
replay and problems are tested in tests/daemon. A turn's own stream (``prompt`` with
``Accept: text/event-stream``) ends with the turn and stays in.

The generated path ids mostly name nothing (a 404); half of them are swapped for a real session's
id so the routes' own checks are reached too. The session prompted is set to deny permission
requests and to time its turns out, so no generated prompt can wait on a human.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, checks
from schemathesis.core.result import Ok

from acpd.daemon.openapi import OPERATIONS, build_spec

from .live import Live, live_daemon

EXAMPLES: Final = 120
STREAMS: Final = ("streamEvents", "streamAcpMessages")
PROBE: Final = "probe"
"""The session the generated requests reach (prompt, cancel, events, permissions)."""
PATCHED: Final = "patched"
"""The session generated PATCHes change: never prompted, so a generated policy cannot make a turn wait."""

schema = schemathesis.openapi.from_dict(build_spec()).exclude(operation_id=list(STREAMS))
schema.config.generation.update(allow_extra_parameters=False)  # unknown query parameters are ignored, by design
OPERATIONS_RUN: Final = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
EXERCISED: Final = {operation.label for operation in OPERATIONS_RUN}


@schemathesis.serializer("application/jsonl")
def _json_lines(ctx: Any, value: Any) -> bytes:
    """An import body as JSON lines: the generated text as it is (the spec says a string)."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@schemathesis.check
def not_a_server_error_but_a_batch(ctx: Any, response: Any, case: Case[Any]) -> bool | None:
    """``not_a_server_error``, except for the one 5xx a client may cause: ``/acp`` answers a JSON-RPC
    batch 501, as ACP's Streamable HTTP transport says (one message per POST)."""
    if response.status_code == 501 and case.operation.path == "/acp" and isinstance(case.body, list):
        return None
    return checks.not_a_server_error(ctx, response, case)


CHECKS: Final = [
    not_a_server_error_but_a_batch,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
"""Not ``negative_data_rejection``: the daemon, by design, takes an empty query parameter for its
default (``?limit=``) and ACP's own models drop a malformed ``_meta`` of a content block instead of
refusing the block; each is a request the check calls invalid and the daemon serves."""
MIN_REQUESTS: Final = 2000
sent: Counter[str] = Counter()
"""Requests sent per operation: a whole run must send a few thousand."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("live")
    with live_daemon(home) as daemon:
        policy = {"permissions": "deny", "turnTimeoutSeconds": 5, "permissionTimeoutSeconds": 1}
        for session_id in (PROBE, PATCHED):
            body = {"id": session_id, "agent": "mock", "cwd": str(home), "policy": policy}
            created = httpx.post(f"{daemon.url}/v1/sessions", json=body, headers=daemon.headers, timeout=20)
            assert created.status_code == 201, created.text
        yield daemon
    if set(sent) == EXERCISED:  # a whole run, not a -k selection
        assert sum(sent.values()) >= MIN_REQUESTS, sent


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_answers_generated_requests_as_the_spec_says(case: Case[Any], live: Live) -> None:
    _aim(case)
    case.call_and_validate(
        base_url=live.url,
        headers=live.headers,
        checks=CHECKS,
        timeout=20,
    )
    sent[case.operation.label] += 1


def _aim(case: Case[Any]) -> None:
    """Half the generated session ids are swapped for a real session's (by the id's own hash, so a
    shrunk example is still the same request)."""
    params = case.path_parameters
    if not params or "id" not in params or case.operation.path.startswith("/v1/acp") or case.method == "DELETE":
        return
    if zlib.crc32(str(params["id"]).encode()) % 2:
        params["id"] = PATCHED if case.method == "PATCH" else PROBE


def test_the_run_exercises_every_operation_but_the_endless_streams() -> None:
    assert {op.operation_id for op in OPERATIONS} - set(STREAMS) == {
        operation.definition.raw["operationId"] for operation in OPERATIONS_RUN
    }
