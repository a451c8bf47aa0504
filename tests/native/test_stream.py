"""claude-native's one model call against answers no real API should send: each becomes a
classified, retryable failure rather than an error from inside the SDK."""

from __future__ import annotations

import json
import socket
from typing import Any

import anthropic
import anyio
import httpx2
import pytest

from acpd.adapters.claude_native.stream import ModelFailure, stream_message
from acpd.protocol.jsonio import JsonObject

pytestmark = pytest.mark.anyio

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    },
}
STOP: list[dict[str, Any]] = [
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2},
    },
    {"type": "message_stop"},
]
TEXT_DELTA = {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "x"}}
TEXT_START = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}


def sse(events: list[dict[str, Any]]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"event: message_start\ndata: {not json\n\n", id="an event that is not JSON"),
        pytest.param(sse([START, TEXT_DELTA, *STOP]), id="a delta for a block never started"),
        pytest.param(sse([TEXT_START, *STOP]), id="no message_start"),
    ],
)
async def test_a_malformed_stream_is_a_retryable_model_error(body: bytes) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
        client = anthropic.AsyncAnthropic(api_key="test", base_url="http://127.0.0.1:9", http_client=http)
        params = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        emitted: list[JsonObject] = []

        async def emit(update: JsonObject) -> None:
            emitted.append(update)

        with pytest.raises(ModelFailure) as failure:
            await stream_message(client, params, emit, [])
    assert failure.value.code == "MODEL_ERROR"
    assert failure.value.retryable
    assert "malformed" in failure.value.message


async def test_an_error_of_the_daemons_own_while_streaming_is_not_taken_for_the_models() -> None:
    events: list[dict[str, Any]] = [
        START,
        TEXT_START,
        {**TEXT_DELTA, "index": 0},
        {"type": "content_block_stop", "index": 0},
        *STOP,
    ]

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse(events))

    async def emit(update: JsonObject) -> None:
        raise ValueError("the daemon's own bug")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
        client = anthropic.AsyncAnthropic(api_key="test", base_url="http://127.0.0.1:9", http_client=http)
        params = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(ValueError, match="the daemon's own bug"):
            await stream_message(client, params, emit, [])


def refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unresolvable(request: httpx2.Request) -> httpx2.Response:
    # what the connection pool raises when the host name does not resolve
    raise httpx2.ConnectError("[Errno -2] Name or service not known") from socket.gaierror(
        -2, "Name or service not known"
    )


@pytest.mark.parametrize("where", ["nothing listens", "the host does not resolve"])
async def test_a_model_api_that_cannot_be_reached_is_a_retryable_unreachable_error_naming_the_cause(
    where: str,
) -> None:
    transport = httpx2.MockTransport(unresolvable) if where == "the host does not resolve" else None
    url = f"http://127.0.0.1:{refused_port()}" if transport is None else "http://model.invalid"
    async with httpx2.AsyncClient(transport=transport) as http:
        client = anthropic.AsyncAnthropic(api_key="test", base_url=url, http_client=http, max_retries=0)
        params = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}

        async def emit(update: JsonObject) -> None:
            raise AssertionError("nothing was streamed")

        with anyio.fail_after(10), pytest.raises(ModelFailure) as failure:
            await stream_message(client, params, emit, [])
    assert failure.value.code == "MODEL_UNREACHABLE"
    assert failure.value.retryable
    cause = "Name or service not known" if transport is not None else "Connect call failed"
    assert cause in failure.value.message
