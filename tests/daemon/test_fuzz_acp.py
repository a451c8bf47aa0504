"""Fuzz, in process: malformed JSON-RPC frames on the ACP face (a memory transport).

Each request gets an answer (a result, or -32700/-32600/-32601/-32602 or another error of the
request's own), never an internal error for the client's input, and the connection stays up:
a well-formed request sent after the garbage is answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acpd.config import DaemonConfig, Policy
from acpd.daemon.acp_face import AcpConnection
from acpd.daemon.manager import SessionManager
from acpd.errors import INTERNAL_ERROR
from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.store.memory import MemoryEventStore
from acpd.transports.memory import MemoryTransport, create_memory_transport_pair
from tests.strategies import json_values

pytestmark = pytest.mark.anyio

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
SESSION = "acp-fuzzed"
METHODS = [
    "initialize", "authenticate", "session/new", "session/load", "session/resume", "session/list",
    "session/close", "session/prompt", "session/cancel", "session/set_mode", "session/set_config_option",
    "session/set_model", "$/cancel_request", "nope", "",
]  # fmt: skip
KEYS = ["sessionId", "cwd", "prompt", "modeId", "modelId", "configId", "value", "protocolVersion", "mcpServers",
        "additionalDirectories", "cursor", "_meta", "requestId"]  # fmt: skip
values = json_values | st.sampled_from(
    [SESSION, "/", "..", "plan", "mock-large", "agent", "mock", "nope", 1, True, [{"type": "text", "text": "text hi"}]]
)
params = st.dictionaries(st.sampled_from(KEYS), values, max_size=4) | json_values
ids: st.SearchStrategy[JsonValue] = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=6) | st.sampled_from([None, True, 1.5, []])
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2])},
    optional={"id": ids, "method": st.sampled_from(METHODS) | json_values, "params": params, "result": values},
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["message", "message", "message", "raw", "json", "deep"]))
    if kind == "raw":
        return draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ")
    if kind == "json":
        return jsonio.dumps(draw(json_values))
    if kind == "deep":
        depth = draw(st.integers(min_value=120, max_value=1_100))
        request_id = draw(st.integers(min_value=0, max_value=99))
        nested = b"[" * depth + b"]" * depth
        return b'{"jsonrpc":"2.0","id":%d,"method":"session/list","params":{"cursor":%s}}' % (request_id, nested)
    return jsonio.dumps(draw(messages))


@dataclass
class Face:
    client_end: MemoryTransport


@pytest.fixture
async def face(tmp_path: Path, workdir: Path) -> AsyncIterator[Face]:
    policy = Policy(permissions="deny", turn_timeout_seconds=10)
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", policy=policy)
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        await manager.create({"agent": "mock", "cwd": str(workdir), "id": SESSION})
        server_end, client_end = create_memory_transport_pair()
        connection = AcpConnection(manager, server_end)
        async with client_end, anyio.create_task_group() as tg:
            tg.start_soon(connection.serve)
            yield Face(client_end)
            await connection.aclose()
    await store.aclose()


def expects_answer(frame: bytes) -> JsonValue:
    """The id a frame's request must be answered with, or None (notifications, garbage, responses)."""
    try:
        message = jsonio.loads(frame)
    except jsonio.JSONDecodeError:
        return None
    if isinstance(message, dict) and message.get("jsonrpc") == "2.0" and isinstance(message.get("method"), str):
        raw_id = message.get("id")
        if message["method"] and jsonrpc.is_request_id(raw_id) and message["method"] != "$/cancel_request":
            return raw_id
    return None


@FUZZ_SETTINGS
@given(garbage=st.lists(frames(), min_size=1, max_size=6))
async def test_malformed_frames_get_json_rpc_errors_and_the_connection_answers_on(
    face: Face, garbage: list[bytes]
) -> None:
    probe = {"jsonrpc": "2.0", "id": "probe", "method": "session/list", "params": {}}
    waiting = [i for frame in garbage if (i := expects_answer(frame)) is not None]
    answers: list[JsonObject] = []
    with anyio.fail_after(20):
        for frame in garbage:
            await face.client_end.inject(frame)
        await face.client_end.send(jsonio.dumps(probe))
        while not any(a.get("id") == "probe" for a in answers) or any(
            not any(a.get("id") == i and type(a.get("id")) is type(i) for a in answers) for i in waiting
        ):
            for received in await face.client_end.receive():
                assert isinstance(received, bytes)
                message = jsonio.loads(received)
                if "method" in message:
                    continue  # a notification (updates), or a request of the daemon's
                assert jsonrpc.classify(message) is jsonrpc.Kind.RESPONSE, message
                answers.append(message)
    for answer in answers:
        assert answer.get("error", {}).get("code") != INTERNAL_ERROR, answer
