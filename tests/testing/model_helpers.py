"""Helpers for the mock model server's tests: SSE parsing and a few request bodies."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import orjson
import pytest

from acpd.testing.model_server import MockModelServer, serve_mock_model

Json = dict[str, Any]


def _transport_errors() -> tuple[type[Exception], ...]:
    # Newer anthropic SDKs run on httpx2, older ones on httpx; a cut stream surfaces as either's error.
    errors: list[type[Exception]] = [anthropic.APIError, httpx.HTTPError]
    if importlib.util.find_spec("httpx2") is not None:
        errors.append(importlib.import_module("httpx2").HTTPError)
    return tuple(errors)


SDK_TRANSPORT_ERRORS = _transport_errors()
"""What the anthropic SDK raises when the connection drops mid-response."""

ANTHROPIC_BASH: Json = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
        "required": ["command"],
    },
}
EXEC_COMMAND_SCHEMA: Json = {"type": "object", "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}}}
SHELL_ARRAY_SCHEMA: Json = {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """``(event name or None, decoded data)`` per SSE event; ``[DONE]`` stays a string."""
    events: list[tuple[str | None, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data += line.removeprefix("data: ")
        events.append((name, data if data == "[DONE]" else orjson.loads(data)))
    return events


def event_types(events: list[tuple[str | None, Any]]) -> list[str]:
    """The ``type`` of every event, checking that each SSE ``event:`` name agrees with it."""
    types = []
    for name, data in events:
        assert name == data["type"]
        types.append(data["type"])
    return types


async def raw_post(url: str, path: str, body: Json) -> bytes:
    """POST over a bare TCP connection and return every byte the server sent until it closed."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    payload = orjson.dumps(body)
    head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
    received = bytearray()
    async with await anyio.connect_tcp(host, port or 80) as stream:
        await stream.send(head.encode() + payload)
        try:
            while True:
                received += await stream.receive()
        except anyio.EndOfStream:
            pass
    return bytes(received)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One event loop per module, so that the module's tests share one server (each stop costs 0.2 s)."""
    return "asyncio"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[MockModelServer]:
    async with serve_mock_model() as server:
        yield server
