"""Property: no input, however malformed, stops a peer from answering the next valid request."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.protocol.jsonrpc import Kind
from acpd.rpc import Direction, JsonRpcPeer, Tap
from acpd.transports.memory import create_memory_transport_pair
from tests.strategies import json_values, property_settings

pytestmark = pytest.mark.anyio

PROPERTY_SETTINGS = property_settings(150)
PROBE: JsonObject = {"jsonrpc": "2.0", "id": "probe-after-garbage", "method": "probe", "params": {"x": 1}}

small_ids = st.integers(min_value=-2, max_value=3) | st.sampled_from(["0", "1", "a"])
# well-formed messages of every kind, including ones that start a handler that never returns
# (method "wait") and cancellations aimed at those, so the hostile mutations below land near them
VALID_MESSAGES: list[JsonObject] = [
    {"jsonrpc": "2.0", "id": 1, "method": "wait", "params": {}},
    {"jsonrpc": "2.0", "id": "a", "method": "echo", "params": [1]},
    {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s"}},
    {"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": 1}},
    {"jsonrpc": "2.0", "id": 0, "result": {"ok": True}},
    {"jsonrpc": "2.0", "id": 0, "error": {"code": -32000, "message": "no"}},
]
FIELDS = ["jsonrpc", "id", "method", "params", "result", "error"]
field_values = small_ids | json_values | st.fixed_dictionaries({"requestId": small_ids | json_values})


def mutate(message: JsonObject, replaced: dict[str, JsonValue], removed: list[str]) -> JsonObject:
    mutated = {key: value for key, value in message.items() if key not in removed}
    mutated.update(replaced)
    return mutated


nearly_valid = st.builds(
    mutate,
    st.sampled_from(VALID_MESSAGES),
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=2),
    st.lists(st.sampled_from(FIELDS), max_size=2),
)
cancellations = st.builds(
    lambda params: {"jsonrpc": "2.0", "method": "$/cancel_request", "params": params},
    st.fixed_dictionaries({"requestId": small_ids | json_values}) | json_values,
)
frames = st.lists(
    st.binary(max_size=40)
    | (json_values | nearly_valid | cancellations | st.sampled_from(VALID_MESSAGES)).map(jsonio.dumps)
    | st.integers(min_value=1, max_value=2**40).map(FrameTooLong),
    max_size=12,
)


async def serve(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
    if method == "wait":
        await anyio.sleep_forever()
    return {"method": method, "params": params}


async def ignore(method: str, params: JsonValue, message: JsonObject) -> None:
    return None


async def answer_to_probe_after(
    garbage: list[Frame], answer_invalid: bool = True, tap: Tap | None = None
) -> JsonObject:
    """Feed the garbage to a running peer, then the probe request; return the probe's answer."""
    ours, theirs = create_memory_transport_pair()
    peer = JsonRpcPeer(ours, on_request=serve, on_notification=ignore, answer_invalid=answer_invalid, tap=tap)
    async with theirs, anyio.create_task_group() as tg:
        tg.start_soon(peer.run)
        try:
            with anyio.fail_after(5):
                for frame in garbage:
                    await theirs.inject(frame)
                await theirs.send(jsonio.dumps(PROBE))
                while True:
                    for frame in await theirs.receive():
                        assert isinstance(frame, bytes)
                        answer = jsonio.loads(frame)
                        if isinstance(answer, dict) and answer.get("id") == PROBE["id"]:
                            return answer
        finally:
            await peer.aclose()
    raise AssertionError("unreachable: the loop returns or times out")


@PROPERTY_SETTINGS
@given(garbage=frames, answer_invalid=st.booleans())
async def test_no_input_stops_the_peer_from_answering_a_valid_request(
    garbage: list[Frame], answer_invalid: bool
) -> None:
    answer = await answer_to_probe_after(garbage, answer_invalid)
    assert answer == {"jsonrpc": "2.0", "id": PROBE["id"], "result": {"method": "probe", "params": {"x": 1}}}


@PROPERTY_SETTINGS
@given(garbage=frames)
async def test_a_peer_that_only_serves_writes_nothing_but_responses(garbage: list[Frame]) -> None:
    written: list[JsonObject] = []

    def tap(direction: Direction, message: JsonObject) -> None:
        if direction == "out":
            written.append(message)

    await answer_to_probe_after(garbage, tap=tap)
    for message in written:
        assert "method" not in message
        assert ("result" in message) != ("error" in message)
        assert jsonrpc.classify(message) is Kind.RESPONSE
