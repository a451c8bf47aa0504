"""Fuzz, in process: every REST and ACP-over-HTTP route and method, hostile input of every kind.

Whatever a client sends, the answer is a 4xx ``application/problem+json`` (a 5xx only for an
agent's fault), and the daemon stays healthy: the session made before keeps its whole history.
Requests go straight to the ASGI app, so a streaming answer is seen from its first message and
then let go (httpx's ASGI transport would wait for its end, which an SSE stream never reaches).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from acpd.config import DaemonConfig, Policy
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.protocol import jsonio
from acpd.store.sqlite import SqliteEventStore
from tests.strategies import json_values

pytestmark = pytest.mark.anyio

FUZZ_SETTINGS = settings(
    max_examples=600,  # about 100 per route family
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
HOST = "127.0.0.1:4520"
SESSION = "fuzzed-session"
WITNESS = "witness-5f0c2e9a7b1d4c3e"
AGENT_FAULTS = frozenset({"agent-error", "agent-exited", "agent-unavailable", "agent-start-timeout", "rpc-error"})
"""Problems a 5xx may carry: the agent's fault, never the client's input."""
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def call(
    app: ASGIApp, method: str, raw_path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> Answer:
    """One request to the app; a streaming answer is cut after its first body chunk."""
    sent: list[Message] = []
    finished = anyio.Event()
    request_read = False

    async def receive() -> Message:
        nonlocal request_read
        if not request_read:
            request_read = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        # a whole answer, or the first chunk of a stream (which would run until the client goes)
        if message["type"] == "http.response.body":
            finished.set()

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 4520),
    }
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_serve, app, scope, receive, send)
            await finished.wait()
            tg.cancel_scope.cancel()
    start = sent[0]
    assert start["type"] == "http.response.start"
    answer_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return Answer(start["status"], answer_headers, b"".join(m.get("body", b"") for m in sent[1:]))


async def _serve(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    await app(scope, receive, send)


# -- strategies ---------------------------------------------------------------------------------

odd_ids = st.sampled_from(
    [SESSION, ".", "..", "", " ", "%2F", "a/b", "ü", "x" * 300, "0", "-1", "null", "p1", "p99999999999999999999"]
) | st.text(max_size=12)
huge_strings = st.integers(min_value=1_000, max_value=300_000).map(lambda n: "x" * n)
field_values = (
    json_values
    | huge_strings
    | st.sampled_from(["mock", "broken", "/", "/usr", "/" + "a" * 300, ".", "..", "once", "always", "plan"])
    | st.sampled_from(["mock-large", "nope", "ask", "allow", "deny", True, False, None, 2**63 - 1, -1, 1.5])
)
FIELDS = [
    "agent", "cwd", "id", "title", "project", "model", "mode", "thoughtLevel", "config", "policy",
    "mcpServers", "additionalDirectories", "archived", "prompt", "queue", "reply", "optionId",
    "jsonrpc", "method", "params", "result", "error",
]  # fmt: skip
plausible_bodies = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=5)
policy_bodies = st.fixed_dictionaries(
    {"policy": st.dictionaries(st.sampled_from(["permissions", "maxSteps", "turnTimeoutSeconds", "x"]), field_values)}
)
rpc_bodies = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "method": st.sampled_from(["initialize", "session/new", "x"])},
    optional={
        "id": st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5) | st.none() | st.lists(st.integers(0, 9)),
        "params": field_values,
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["empty", "json", "plausible", "policy", "rpc", "raw", "deep", "prompt"]))
    if kind == "empty":
        return b""
    if kind == "raw":
        return draw(st.binary(max_size=60))
    if kind == "deep":  # raw: the codec cannot encode what is this deep, nor integers this big
        depth = draw(st.integers(min_value=120, max_value=1_200))
        value = draw(st.sampled_from([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth, b"9" * 30]))
        return b'{"%s": %s}' % (draw(st.sampled_from(FIELDS)).encode(), value)
    if kind == "prompt":
        # text for the mock agent that ends quickly whatever it says: "text" lines only
        words = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=30))
        return jsonio.dumps(
            {
                "prompt": draw(
                    st.sampled_from(
                        [
                            f"text {words}",
                            [{"type": "text", "text": f"text {words}"}],
                            [],
                            [1],
                            words and [{"type": words}],
                        ]
                    )
                )
            }
        )
    chosen = {"json": json_values, "plausible": plausible_bodies, "policy": policy_bodies, "rpc": rpc_bodies}[kind]
    return jsonio.dumps(draw(chosen))


header_values = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "application/merge-patch+json", "",
     "text/event-stream", "*/*", "5", "-1", "x", "9" * 40, "99999999999999999999", "\u00b2"]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20)  # fmt: skip
HEADER_NAMES = ["content-type", "accept", "last-event-id", "idempotency-key", "origin", "authorization"]
query_keys = st.sampled_from(["limit", "after", "cursor", "project", "agent", "archived", "q", "format", "x"])


Request = tuple[str, str, str, list[tuple[bytes, bytes]], bytes]
"""method, raw path, query string, headers, body"""


@st.composite
def requests(draw: st.DrawFn, templates: list[str]) -> Request:
    template = draw(st.sampled_from(templates))
    raw_path = template.format(id=quote(draw(odd_ids), safe=""), pid=quote(draw(odd_ids), safe=""))
    query = urlencode(draw(st.dictionaries(query_keys, header_values, max_size=3)))
    headers = [(b"host", HOST.encode())]
    for name, value in draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=3)).items():
        headers.append((name.encode(), value.encode("latin-1")))
    return draw(st.sampled_from(METHODS)), raw_path, query, headers, draw(bodies())


FAMILIES = {
    "sessions": ["/v1/health", "/v1/agents", "/v1/sessions", "/v1/sessions/{id}", "/v1/nothing/{id}"],
    "turns": ["/v1/sessions/{id}/prompt", "/v1/sessions/{id}/cancel"],
    "events": ["/v1/sessions/{id}/events", "/v1/sessions/{id}/events/stream"],
    "permissions": ["/v1/sessions/{id}/permissions", "/v1/sessions/{id}/permissions/{pid}"],
    "acp": ["/v1/acp", "/v1/acp/{id}", "/v1/rpc"],
}


# -- the daemon under fuzz ----------------------------------------------------------------------


@dataclass
class Fuzzed:
    app: ASGIApp
    manager: SessionManager
    witness: list[int]
    """The seqs of a session no fuzzed request can name: nothing may be lost from it."""


@pytest.fixture
async def fuzzed(tmp_path: Path, workdir: Path) -> AsyncIterator[Fuzzed]:
    """A daemon on SQLite whose sessions' agents cannot wait on a human: permissions are denied."""
    policy = Policy(permissions="deny", turn_timeout_seconds=10)
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=str(tmp_path / "fuzz.db"), policy=policy)
    store = await SqliteEventStore.open(str(tmp_path / "fuzz.db"))
    async with SessionManager(config, store).running() as manager:
        await manager.create({"agent": "mock", "cwd": str(workdir), "id": SESSION})
        await manager.create({"agent": "mock", "cwd": str(workdir), "id": WITNESS})
        turn = await manager.prompt(WITNESS, "text witness")
        await turn.done.wait()
        runtime = await manager.runtime(WITNESS)
        await runtime.save()
        seqs = [r.seq for r in await runtime.log.read(0, 10_000)]
        yield Fuzzed(create_app(manager), manager, seqs)
    await store.aclose()


def assert_contract(answer: Answer) -> None:
    if answer.status >= 400:
        assert answer.headers["content-type"] == "application/problem+json", answer
        problem = jsonio.loads(answer.body)
        assert problem["status"] == answer.status
        assert problem["type"].startswith("urn:acpd:problem:")
        if answer.status >= 500:
            assert problem["type"].removeprefix("urn:acpd:problem:") in AGENT_FAULTS, problem


async def assert_healthy(fuzzed: Fuzzed) -> None:
    health = await call(fuzzed.app, "GET", "/v1/health", "", [(b"host", HOST.encode())], b"")
    assert (health.status, jsonio.loads(health.body)["status"]) == (200, "ok")
    runtime = await fuzzed.manager.runtime(WITNESS)
    assert [r.seq for r in await runtime.log.read(0, 10_000)] == fuzzed.witness


@FUZZ_SETTINGS
@given(request=requests([template for family in FAMILIES.values() for template in family]))
async def test_no_request_to_any_route_gets_a_5xx_or_a_non_problem_error_and_the_daemon_stays_whole(
    fuzzed: Fuzzed, request: Request
) -> None:
    assert_contract(await call(fuzzed.app, *request))
    await assert_healthy(fuzzed)
