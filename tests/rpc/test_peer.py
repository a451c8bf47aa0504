"""JsonRpcPeer: correlation, dispatch, errors on the wire, cancellation, tap order, closing.

Most tests drive a peer from the raw other end of its transport (``Wire``), so the exact bytes
on the wire are what is asserted; a few connect two peers.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from acpd.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    RESOURCE_NOT_FOUND,
    AcpdError,
    ConnectionClosed,
    RpcError,
    SessionNotFound,
)
from acpd.protocol import jsonio
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc import Direction, JsonRpcPeer
from acpd.transports.memory import MemoryTransport, create_memory_transport_pair

pytestmark = pytest.mark.anyio


class Wire:
    """The raw other end of a peer's transport: writes and reads JSON messages as bytes."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self._frames: deque[Frame] = deque()

    async def send(self, message: JsonValue) -> None:
        await self.transport.send(jsonio.dumps(message))

    async def receive(self) -> JsonObject:
        if not self._frames:
            self._frames.extend(await self.transport.receive())
        frame = self._frames.popleft()
        assert isinstance(frame, bytes)
        message = jsonio.loads(frame)
        assert isinstance(message, dict)
        return message


@asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[tuple[JsonRpcPeer, Wire]]:
    """A running peer, and the raw other end of its transport; every wait inside is bounded."""
    ours, theirs = create_memory_transport_pair()
    peer = JsonRpcPeer(ours, name="under-test", **options)
    async with theirs, anyio.create_task_group() as tg:
        tg.start_soon(peer.run)
        try:
            with anyio.fail_after(5):
                yield peer, Wire(theirs)
        finally:
            await peer.aclose()


@asynccontextmanager
async def connect(a: dict[str, Any], b: dict[str, Any]) -> AsyncIterator[tuple[JsonRpcPeer, JsonRpcPeer]]:
    """Two running peers joined by a memory pair."""
    left, right = create_memory_transport_pair()
    peer_a = JsonRpcPeer(left, name="a", **a)
    peer_b = JsonRpcPeer(right, name="b", **b)
    async with anyio.create_task_group() as tg:
        tg.start_soon(peer_a.run)
        tg.start_soon(peer_b.run)
        try:
            with anyio.fail_after(5):
                yield peer_a, peer_b
        finally:
            await peer_a.aclose()
            await peer_b.aclose()


async def echo(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
    return {"method": method, "params": params}


def request(msg_id: JsonValue, method: str = "echo", params: JsonValue = None) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


# -- correlation ---------------------------------------------------------------------------------


async def test_string_ids_are_echoed_in_responses() -> None:
    async with serve(on_request=echo) as (_, wire):
        for msg_id in ("1", 1, "abc", -7):
            await wire.send(request(msg_id, params={"id": msg_id}))
        answers = [await wire.receive() for _ in range(4)]
    by_id = {(type(a["id"]), a["id"]): a for a in answers}
    assert set(by_id) == {(str, "1"), (int, 1), (str, "abc"), (int, -7)}
    for (_, msg_id), answer in by_id.items():
        assert answer == {"jsonrpc": "2.0", "id": msg_id, "result": {"method": "echo", "params": {"id": msg_id}}}


async def test_outgoing_request_ids_are_integers_counting_from_zero() -> None:
    results: list[JsonValue] = []
    async with serve() as (peer, wire), anyio.create_task_group() as tg:

        async def ask_twice() -> None:
            results.append(await peer.request("first", {"a": 1}))
            results.append(await peer.request("second"))

        tg.start_soon(ask_twice)
        first = await wire.receive()
        assert first == {"jsonrpc": "2.0", "id": 0, "method": "first", "params": {"a": 1}}
        await wire.send({"jsonrpc": "2.0", "id": 0, "result": "one"})
        second = await wire.receive()
        assert second == {"jsonrpc": "2.0", "id": 1, "method": "second"}
        await wire.send({"jsonrpc": "2.0", "id": 1, "result": None})
    assert results == ["one", None]


async def test_a_response_with_a_string_id_does_not_answer_the_same_integer_id() -> None:
    async with serve() as (peer, wire), anyio.create_task_group() as tg:
        results: list[JsonValue] = []

        async def ask() -> None:
            results.append(await peer.request("question"))

        tg.start_soon(ask)
        assert (await wire.receive())["id"] == 0
        await wire.send({"jsonrpc": "2.0", "id": "0", "result": "wrong"})
        await wire.send({"jsonrpc": "2.0", "id": 42, "result": "unknown"})
        await wire.send({"jsonrpc": "2.0", "id": 0, "result": "right"})
    assert results == ["right"]


async def test_error_response_raises_rpc_error_with_code_message_and_data() -> None:
    async with serve() as (peer, wire), anyio.create_task_group() as tg:
        caught: list[RpcError] = []

        async def ask(method: str) -> None:
            with pytest.raises(RpcError) as info:
                await peer.request(method)
            caught.append(info.value)

        tg.start_soon(ask, "with-data")
        await wire.receive()
        await wire.send({"jsonrpc": "2.0", "id": 0, "error": {"code": -32002, "message": "nope", "data": {"x": 1}}})
        tg.start_soon(ask, "without-data")
        await wire.receive()
        await wire.send({"jsonrpc": "2.0", "id": 1, "error": {"code": 7, "message": "bare"}})
    assert [(e.code, e.message, e.data) for e in caught] == [(-32002, "nope", {"x": 1}), (7, "bare", None)]


async def test_requests_flow_both_ways_while_a_request_is_pending() -> None:
    async def a_serves(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        return f"{method} answered by a"

    async def b_serves(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        # b asks a while a's request to b is still open, as an ACP agent asks for permission
        permission = await peer_b.request("session/request_permission", {"toolCallId": "t1"})
        return {"stopReason": "end_turn", "permission": permission}

    async with connect({"on_request": a_serves}, {"on_request": b_serves}) as (peer_a, peer_b):
        result = await peer_a.request("session/prompt", {"prompt": []})
    assert result == {"stopReason": "end_turn", "permission": "session/request_permission answered by a"}


async def test_messages_reach_handlers_untouched_with_unknown_fields_and_meta() -> None:
    seen: list[tuple[str, JsonValue, JsonObject]] = []

    async def record(method: str, params: JsonValue, message: JsonObject) -> None:
        seen.append((method, params, message))

    sent = {
        "jsonrpc": "2.0",
        "method": "session/update",
        "params": {"sessionId": "s", "_meta": {"vendor": [1, {"deep": None}]}, "futureField": 1.5},
        "extension": {"kept": True},
    }
    async with serve(on_notification=record, on_request=echo) as (_, wire):
        await wire.send(sent)
        await wire.send(request(0))
        await wire.receive()
    assert seen == [("session/update", sent["params"], sent)]


# -- notifications and concurrency ---------------------------------------------------------------


async def test_notifications_are_handled_one_at_a_time_in_arrival_order() -> None:
    handled: list[int] = []
    active = 0
    most_active = 0
    all_handled = anyio.Event()

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        await anyio.lowlevel.checkpoint()  # give another handler the chance to overlap, if it could
        handled.append(params["n"])
        active -= 1
        if len(handled) == 50:
            all_handled.set()

    async with connect({}, {"on_notification": on_notification}) as (peer_a, _):
        for n in range(50):
            await peer_a.notify("session/update", {"n": n})
        await all_handled.wait()
    assert handled == list(range(50))
    assert most_active == 1


async def test_a_burst_read_at_once_lets_other_tasks_run_while_it_is_handled() -> None:
    handled = 0
    seen_by_other_task: list[int] = []
    all_handled = anyio.Event()

    async def look() -> None:
        seen_by_other_task.append(handled)

    async with serve() as (peer, wire), anyio.create_task_group() as tg:

        async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
            nonlocal handled
            if handled == 0:
                tg.start_soon(look)
            handled += 1  # never awaits: without the reader's own yields, look() waits for all 500
            if handled == 500:
                all_handled.set()

        peer._on_notification = on_notification  # the handler needs the task group above
        for n in range(500):
            wire.transport._send_stream.send_nowait(jsonio.dumps({"jsonrpc": "2.0", "method": "n", "params": {"n": n}}))
        await all_handled.wait()
    assert seen_by_other_task and seen_by_other_task[0] <= 64


async def test_send_raw_writes_the_bytes_as_given_and_in_order_with_other_messages() -> None:
    tapped: list[JsonObject] = []
    stored = b'{"jsonrpc":"2.0","method":"session/update","params":{"z":1,"a":2}}'
    async with serve(tap=lambda direction, message: tapped.append(message)) as (peer, wire):
        await peer.notify("first")
        await peer.send_raw(stored)
        await peer.notify("last")
        notice = [jsonio.dumps({"jsonrpc": "2.0", "method": method}) for method in ("first", "last")]
        assert await wire.transport.receive() == [notice[0], stored, notice[1]]  # all buffered: one read
    assert [m["method"] for m in tapped] == ["first", "last"]


async def test_send_raw_on_a_closed_peer_raises_connection_closed() -> None:
    async with serve() as (peer, _):
        await peer.aclose()
        with pytest.raises(ConnectionClosed):
            await peer.send_raw(b"{}")


async def test_unknown_notifications_are_ignored_without_a_handler() -> None:
    async with serve(on_request=echo) as (_, wire):
        await wire.send({"jsonrpc": "2.0", "method": "whatever/this_is"})
        await wire.send(request(1))
        assert (await wire.receive())["id"] == 1


async def test_a_waiting_request_handler_does_not_block_reading() -> None:
    waiting = anyio.Event()
    released = anyio.Event()

    async def wait_for_release(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        waiting.set()
        await released.wait()
        return "released"

    async def release(method: str, params: JsonValue, message: JsonObject) -> None:
        released.set()

    results: list[JsonValue] = []
    options = {"on_request": wait_for_release, "on_notification": release}
    async with connect({}, options) as (peer_a, _), anyio.create_task_group() as tg:

        async def ask() -> None:
            results.append(await peer_a.request("wait"))

        tg.start_soon(ask)
        await waiting.wait()
        await peer_a.notify("release")
    assert results == ["released"]


async def test_a_failing_notification_handler_is_logged_and_reading_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[str] = []

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        if method == "bad":
            raise ValueError("handler bug")
        handled.append(method)

    async with serve(on_notification=on_notification, on_request=echo) as (_, wire):
        await wire.send({"jsonrpc": "2.0", "method": "bad"})
        await wire.send({"jsonrpc": "2.0", "method": "good"})
        await wire.send(request(1))
        await wire.receive()
    assert handled == ["good"]
    assert any(record.exc_info for record in caplog.records if record.name == "acpd.rpc.peer")


# -- errors on the wire --------------------------------------------------------------------------


async def test_a_frame_that_is_not_json_gets_a_parse_error_with_a_null_id() -> None:
    invalid: list[tuple[Frame, str]] = []
    async with serve(on_invalid=lambda frame, reason: invalid.append((frame, reason))) as (_, wire):
        await wire.transport.send(b'{"jsonrpc": "2.0", "id": 1, "method"')
        answer = await wire.receive()
    assert answer["id"] is None
    assert answer["error"]["code"] == PARSE_ERROR
    assert [frame for frame, _ in invalid] == [b'{"jsonrpc": "2.0", "id": 1, "method"']


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ({"jsonrpc": "1.0", "id": 7, "method": "x"}, 7),
        ({"jsonrpc": "2.0", "id": "s", "method": 3}, "s"),
        ({"jsonrpc": "2.0", "id": 8, "method": "x", "params": "not a structure"}, 8),
        ({"jsonrpc": "2.0", "id": [1], "method": "x"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "x"}, None),
        ({"jsonrpc": "2.0"}, None),
        ([{"jsonrpc": "2.0", "id": 1, "method": "batch"}], None),
        ("a string", None),
        (None, None),
    ],
)
async def test_a_json_value_that_is_not_a_message_gets_invalid_request_with_its_readable_id(
    message: JsonValue, expected_id: JsonValue
) -> None:
    reasons: list[str] = []
    async with serve(on_invalid=lambda frame, reason: reasons.append(reason)) as (_, wire):
        await wire.send(message)
        answer = await wire.receive()
    assert answer["id"] == expected_id
    assert answer["error"]["code"] == INVALID_REQUEST
    assert len(reasons) == 1


async def test_an_overlong_line_gets_invalid_request_with_a_null_id() -> None:
    invalid: list[Frame] = []
    async with serve(on_invalid=lambda frame, reason: invalid.append(frame)) as (_, wire):
        await wire.transport.inject(FrameTooLong(64 * 1024 * 1024))
        answer = await wire.receive()
    assert answer["id"] is None
    assert answer["error"]["code"] == INVALID_REQUEST
    assert invalid == [FrameTooLong(64 * 1024 * 1024)]


async def test_a_message_nested_too_deep_gets_invalid_request_with_its_id() -> None:
    deep = b'{"jsonrpc":"2.0","id":7,"method":"echo","params":{"x":' + b"[" * 200 + b"]" * 200 + b"}}"
    async with serve(on_request=echo) as (_, wire):
        await wire.transport.inject(deep)
        answer = await wire.receive()
        await wire.send(request(8, params={"x": [[[]]]}))
        assert (await wire.receive())["result"] == {"method": "echo", "params": {"x": [[[]]]}}
    assert (answer["id"], answer["error"]["code"]) == (7, INVALID_REQUEST)


async def test_invalid_input_is_reported_but_not_answered_when_answer_invalid_is_false() -> None:
    reasons: list[str] = []
    options = {"on_request": echo, "on_invalid": lambda frame, reason: reasons.append(reason), "answer_invalid": False}
    async with serve(**options) as (_, wire):
        await wire.transport.send(b"garbage")
        await wire.transport.inject(FrameTooLong(10))
        await wire.send({"jsonrpc": "2.0", "id": 3})
        await wire.send(request(4))
        assert (await wire.receive())["id"] == 4
    assert len(reasons) == 3


async def test_responses_are_never_answered_even_when_malformed() -> None:
    reasons: list[str] = []
    async with serve(on_request=echo, on_invalid=lambda frame, reason: reasons.append(reason)) as (_, wire):
        await wire.send({"jsonrpc": "2.0", "id": 3, "error": "not an object"})
        await wire.send({"jsonrpc": "2.0", "id": {"bad": "id"}, "result": 1})
        await wire.send({"jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "yours was bad"}})
        await wire.send(request("probe"))
        assert (await wire.receive())["id"] == "probe"
    assert len(reasons) == 2


async def test_a_malformed_response_to_a_pending_request_fails_that_request() -> None:
    async with serve() as (peer, wire), anyio.create_task_group() as tg:
        caught: list[RpcError] = []

        async def ask() -> None:
            with pytest.raises(RpcError) as info:
                await peer.request("question")
            caught.append(info.value)

        tg.start_soon(ask)
        await wire.receive()
        await wire.send({"jsonrpc": "2.0", "id": 0, "error": {"code": "not an int", "message": "x"}})
    assert [error.code for error in caught] == [INTERNAL_ERROR]


async def test_without_a_request_handler_every_method_is_not_found() -> None:
    async with serve() as (_, wire):
        await wire.send(request(1, "initialize"))
        answer = await wire.receive()
    assert answer == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": METHOD_NOT_FOUND, "message": "Method not found", "data": {"method": "initialize"}},
    }


async def test_a_handler_raising_invalid_params_answers_32602() -> None:
    async def strict(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        raise RpcError.invalid_params("sessionId is required")

    async with serve(on_request=strict) as (_, wire):
        await wire.send(request(1, "session/prompt", {}))
        answer = await wire.receive()
    assert answer["error"] == {
        "code": INVALID_PARAMS,
        "message": "Invalid params",
        "data": {"detail": "sessionId is required"},
    }


class _Refused(AcpdError):
    rpc_code = -32050


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            SessionNotFound("s1"),
            {"code": RESOURCE_NOT_FOUND, "message": "no session with id 's1'", "data": {"sessionId": "s1"}},
        ),
        (_Refused("refused"), {"code": -32050, "message": "refused"}),
        (RpcError(1234, "custom", [1, 2]), {"code": 1234, "message": "custom", "data": [1, 2]}),
    ],
)
async def test_an_acpd_error_is_answered_with_its_code_message_and_data(error: AcpdError, expected: JsonObject) -> None:
    async def failing(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        raise error

    async with serve(on_request=failing) as (_, wire):
        await wire.send(request("x"))
        answer = await wire.receive()
    assert answer == {"jsonrpc": "2.0", "id": "x", "error": expected}


async def test_a_handler_exception_becomes_an_internal_error_and_the_peer_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def buggy(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        if method == "crash":
            raise KeyError("bug")
        return "fine"

    async with serve(on_request=buggy) as (_, wire):
        await wire.send(request(1, "crash"))
        assert await wire.receive() == {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": INTERNAL_ERROR, "message": "Internal error"},
        }
        await wire.send(request(2, "ok"))
        assert await wire.receive() == {"jsonrpc": "2.0", "id": 2, "result": "fine"}
    logged = [r for r in caplog.records if r.name == "acpd.rpc.peer" and r.levelno == logging.ERROR]
    assert len(logged) == 1
    assert logged[0].exc_info is not None


async def test_an_acpd_error_inside_an_exception_group_is_answered_as_itself() -> None:
    async def wrapped(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        raise ExceptionGroup("a task group", [SessionNotFound("gone")])

    async with serve(on_request=wrapped) as (_, wire):
        await wire.send(request(1))
        answer = await wire.receive()
    assert answer["error"]["code"] == RESOURCE_NOT_FOUND


async def test_a_result_that_is_not_json_becomes_an_internal_error() -> None:
    async def unserialisable(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        return {"when": object()}

    async with serve(on_request=unserialisable) as (_, wire):
        await wire.send(request(1))
        answer = await wire.receive()
    assert answer["error"]["code"] == INTERNAL_ERROR


async def test_a_second_request_with_an_id_in_flight_is_rejected() -> None:
    release = anyio.Event()

    async def slow(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        await release.wait()
        return "first"

    async with serve(on_request=slow) as (_, wire):
        await wire.send(request(5))
        await wire.send(request(5))
        duplicate = await wire.receive()
        release.set()
        first = await wire.receive()
    assert (duplicate["id"], duplicate["error"]["code"]) == (5, INVALID_REQUEST)
    assert first == {"jsonrpc": "2.0", "id": 5, "result": "first"}


# -- cancellation --------------------------------------------------------------------------------


async def test_cancel_request_cancels_the_handler_and_answers_32800() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()
    notified: list[str] = []
    tapped: list[tuple[Direction, str | None]] = []

    async def wait_forever(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        notified.append(method)

    options = {
        "on_request": wait_forever,
        "on_notification": on_notification,
        "tap": lambda direction, message: tapped.append((direction, message.get("method"))),
    }
    async with serve(**options) as (_, wire):
        await wire.send(request("slow", "session/prompt"))
        await started.wait()
        await wire.send({"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": "slow"}})
        answer = await wire.receive()
        await cancelled.wait()
    assert answer == {
        "jsonrpc": "2.0",
        "id": "slow",
        "error": {"code": REQUEST_CANCELLED, "message": "Request cancelled"},
    }
    assert notified == []
    assert ("in", "$/cancel_request") in tapped


async def test_cancel_request_read_in_the_same_batch_as_its_request_still_cancels_it() -> None:
    async def wait_forever(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        await anyio.sleep_forever()

    async with serve(on_request=wait_forever) as (_, wire):
        # both frames are buffered before the peer reads, so it sees them in one batch
        await wire.send(request(9))
        await wire.send({"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": 9}})
        answer = await wire.receive()
    assert (answer["id"], answer["error"]["code"]) == (9, REQUEST_CANCELLED)


@pytest.mark.parametrize("params", [{"requestId": 12345}, {"requestId": True}, {"requestId": [1]}, {}, [1], None])
async def test_cancel_request_for_nothing_in_flight_is_ignored(params: JsonValue) -> None:
    async with serve(on_request=echo) as (_, wire):
        await wire.send({"jsonrpc": "2.0", "method": "$/cancel_request", "params": params})
        await wire.send(request(1))
        assert (await wire.receive())["result"] == {"method": "echo", "params": None}


async def test_cancelling_an_outgoing_request_sends_cancel_request_and_drops_the_late_answer() -> None:
    async with serve() as (peer, wire), anyio.create_task_group() as tg:
        outcome: list[str] = []

        async def ask() -> None:
            with anyio.CancelScope() as scope:
                caller_scope.append(scope)
                await peer.request("session/prompt")
            outcome.append("cancelled" if scope.cancelled_caught else "answered")

        caller_scope: list[anyio.CancelScope] = []
        tg.start_soon(ask)
        assert (await wire.receive())["id"] == 0
        caller_scope[0].cancel()
        assert await wire.receive() == {"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": 0}}
        await wire.send({"jsonrpc": "2.0", "id": 0, "error": {"code": REQUEST_CANCELLED, "message": "late"}})

        async def ask_again() -> None:
            outcome.append(await peer.request("next"))

        tg.start_soon(ask_again)
        assert (await wire.receive())["id"] == 1
        await wire.send({"jsonrpc": "2.0", "id": 1, "result": "next answered"})
    assert outcome == ["cancelled", "next answered"]


async def test_cancelling_a_request_to_another_peer_cancels_its_handler() -> None:
    started = anyio.Event()
    handler_cancelled = anyio.Event()
    cancel_answer_seen = anyio.Event()

    async def wait_forever(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            handler_cancelled.set()

    def watch(direction: Direction, message: JsonObject) -> None:
        if direction == "in" and message.get("error", {}).get("code") == REQUEST_CANCELLED:
            cancel_answer_seen.set()

    async with connect({"tap": watch}, {"on_request": wait_forever}) as (peer_a, _):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer_a.request, "session/prompt")
            await started.wait()
            tg.cancel_scope.cancel()
        await handler_cancelled.wait()
        await cancel_answer_seen.wait()


# -- tap -----------------------------------------------------------------------------------------


async def test_tap_order_is_wire_order_with_concurrent_senders() -> None:
    tapped: list[JsonObject] = []

    def tap(direction: Direction, message: JsonObject) -> None:
        if direction == "out":
            tapped.append(message)

    async with serve(tap=tap) as (peer, wire):
        async with anyio.create_task_group() as tg:
            for sender in range(4):

                async def send_many(sender: int = sender) -> None:
                    for n in range(25):
                        await peer.notify("session/update", {"sender": sender, "n": n})
                        await anyio.lowlevel.checkpoint()

                tg.start_soon(send_many)
        on_wire = [await wire.receive() for _ in range(100)]
    assert on_wire == tapped
    senders = [message["params"]["sender"] for message in tapped]
    assert senders != sorted(senders)  # the senders really did interleave


async def test_tap_sees_incoming_messages_before_dispatch_and_responses_both_ways() -> None:
    events: list[tuple[str, JsonValue]] = []

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        events.append(("handled", method))

    def tap(direction: Direction, message: JsonObject) -> None:
        events.append((direction, message.get("method", message.get("id"))))

    async with serve(tap=tap, on_notification=on_notification, on_request=echo) as (peer, wire):
        await wire.send({"jsonrpc": "2.0", "method": "note"})
        await wire.send(request("r1"))
        await wire.receive()
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.request, "outgoing")
            await wire.receive()
            await wire.send({"jsonrpc": "2.0", "id": 0, "result": None})
    assert events == [
        ("in", "note"),
        ("handled", "note"),
        ("in", "echo"),
        ("out", "r1"),
        ("out", "outgoing"),
        ("in", 0),
    ]


async def test_invalid_frames_are_not_tapped() -> None:
    tapped: list[JsonObject] = []
    async with serve(tap=lambda direction, message: tapped.append(message), answer_invalid=False) as (_, wire):
        await wire.transport.send(b"not json")
        await wire.send({"jsonrpc": "2.0", "id": 1})
        await wire.send({"jsonrpc": "2.0", "method": "valid"})
        await wire.send(request(2))
        await wire.receive()
    assert [message.get("method", message.get("id")) for message in tapped] == ["valid", "echo", 2]


async def test_a_failing_tap_is_logged_and_the_peer_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    def tap(direction: Direction, message: JsonObject) -> None:
        if message.get("id") == "boom" or message.get("method") == "boom":
            raise RuntimeError("tap bug")

    async with serve(tap=tap, on_request=echo) as (_, wire):
        await wire.send(request("boom"))  # the answer's "out" tap fails, so it is never written
        await wire.send({"jsonrpc": "2.0", "method": "boom"})  # the "in" tap fails
        await wire.send(request("ok"))
        assert (await wire.receive())["id"] == "ok"
    assert len([r for r in caplog.records if r.name == "acpd.rpc.peer" and r.exc_info]) == 2


# -- closing -------------------------------------------------------------------------------------


async def test_pending_requests_fail_with_connection_closed_at_end_of_stream() -> None:
    async with serve() as (peer, wire), anyio.create_task_group() as tg:
        failures: list[str] = []

        async def ask(method: str) -> None:
            with pytest.raises(ConnectionClosed):
                await peer.request(method)
            failures.append(method)

        tg.start_soon(ask, "one")
        tg.start_soon(ask, "two")
        await wire.receive()
        await wire.receive()
        await wire.transport.aclose()
        await peer.wait_closed()
        assert peer.closed
    assert sorted(failures) == ["one", "two"]
    with pytest.raises(ConnectionClosed):
        await peer.request("after")
    with pytest.raises(ConnectionClosed):
        await peer.notify("after")


async def test_in_flight_request_handlers_are_cancelled_at_end_of_stream() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def wait_forever(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with serve(on_request=wait_forever) as (peer, wire):
        await wire.send(request(1))
        await started.wait()
        await wire.transport.aclose()
        await cancelled.wait()
        await peer.wait_closed()


async def test_aclose_ends_run_and_fails_pending_requests() -> None:
    ours, theirs = create_memory_transport_pair()
    peer = JsonRpcPeer(ours)
    failures: list[str] = []

    async def ask() -> None:
        with pytest.raises(ConnectionClosed):
            await peer.request("never answered")
        failures.append("closed")

    async with theirs:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer.run)
                tg.start_soon(ask)
                await theirs.receive()
                await peer.aclose()
                assert peer.closed
            with pytest.raises(anyio.EndOfStream):
                await theirs.receive()
    assert failures == ["closed"]


async def test_a_peer_closed_before_running_finishes_at_once() -> None:
    ours, theirs = create_memory_transport_pair()
    peer = JsonRpcPeer(ours)
    await peer.aclose()
    await theirs.aclose()
    with anyio.fail_after(5):
        await peer.wait_closed()
        await peer.run()
    assert peer.closed


async def test_run_can_only_be_called_once() -> None:
    ours, theirs = create_memory_transport_pair()
    peer = JsonRpcPeer(ours)
    await theirs.aclose()
    with anyio.fail_after(5):
        await peer.run()
    with pytest.raises(RuntimeError):
        await peer.run()


# -- frames claimed before parsing ---------------------------------------------------------------


async def test_frames_a_claimer_takes_skip_the_parse_and_the_rest_keep_their_order() -> None:
    seen: list[str] = []
    all_done = anyio.Event()

    async def claim(frames: list[Frame], start: int, stop: int) -> int:
        taken = 0
        for frame in frames[start:stop]:
            if not (isinstance(frame, bytes) and frame.startswith(b"raw:")):
                break
            seen.append(frame.decode())
            taken += 1
        return taken

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        seen.append(method)
        if method == "last":
            all_done.set()

    async with serve(on_frames=claim, on_notification=on_notification) as (_, wire):
        for frame in [b"raw:1", b"raw:2", jsonio.dumps({"jsonrpc": "2.0", "method": "parsed"}), b"raw:3"]:
            await wire.transport.send(frame)
        await wire.send({"jsonrpc": "2.0", "method": "last"})
        await all_done.wait()
    assert seen == ["raw:1", "raw:2", "parsed", "raw:3", "last"]


async def test_frames_whose_claimer_fails_are_parsed_as_usual(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    done = anyio.Event()

    async def claim(frames: list[Frame], start: int, stop: int) -> int:
        raise RuntimeError("a bug")

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        seen.append(method)
        done.set()

    with caplog.at_level(logging.ERROR):
        async with serve(on_frames=claim, on_notification=on_notification) as (_, wire):
            await wire.send({"jsonrpc": "2.0", "method": "parsed"})
            await done.wait()
    assert seen == ["parsed"]
    assert "failed to handle incoming messages" in caplog.text


async def test_a_peer_that_finishes_on_its_input_end_answers_what_was_asked_and_asks_nothing_more() -> None:
    # stdio: a client closes its input and reads on; the peer cancelled what it was serving
    ours, theirs = create_memory_transport_pair()
    release = anyio.Event()

    async def on_request(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        await release.wait()
        if method == "ask":
            return await peer.request("question")  # the other side can answer nothing more
        return "done"

    peer = JsonRpcPeer(ours, on_request=on_request, finish_on_input_end=True)
    wire = Wire(theirs)
    with anyio.fail_after(5):
        async with theirs, anyio.create_task_group() as tg:
            tg.start_soon(peer.run)
            await wire.send({"jsonrpc": "2.0", "id": 1, "method": "slow"})
            await wire.send({"jsonrpc": "2.0", "id": 2, "method": "ask"})
            await theirs.close_sending()
            await anyio.wait_all_tasks_blocked()
            assert peer.input_ended and not peer.closed
            release.set()
            sent = [await wire.receive() for _ in range(3)]
            await peer.wait_closed()
    questions = [message for message in sent if "method" in message]
    answers = {message["id"]: message for message in sent if "method" not in message}
    assert answers[1] == {"jsonrpc": "2.0", "id": 1, "result": "done"}
    # its question was written, as a relay writes it, and failed at once: nobody can answer it
    assert [question["method"] for question in questions] == ["question"]
    assert answers[2]["error"]["code"] == RpcError.input_ended().code
