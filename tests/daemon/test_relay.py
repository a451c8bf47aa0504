"""``acpd acp``'s relay: what the daemon's WebSocket sends reaches stdout as NDJSON, one message or a
frame of lines (``framing=lines``) alike."""

from __future__ import annotations

import os

import anyio
import pytest
from websockets.exceptions import ConnectionClosed as WsClosed

from acpd.daemon.acp_stdio import _ws_to_stdout, rpc_url
from acpd.transports.stdio import open_stdio_transport

pytestmark = pytest.mark.anyio


class FakeWebSocket:
    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    async def recv(self, decode: bool = True) -> bytes:
        if not self._frames:
            raise WsClosed(None, None)
        return self._frames.pop(0)


async def test_the_relay_writes_a_frame_of_lines_whole_and_gives_a_single_message_its_newline() -> None:
    stdin_read, stdin_write = os.pipe()
    out_read, out_write = os.pipe()
    frames = [b'{"a":1}\n{"a":2}\n', b'{"b":3}', b'{"c":4}\n']
    try:
        with anyio.fail_after(5):
            async with open_stdio_transport(stdin_fd=stdin_read, stdout_fd=out_write) as stdio:
                await _ws_to_stdout(FakeWebSocket(frames), stdio, anyio.CancelScope())  # type: ignore[arg-type]
        os.close(out_write)
        written = b""
        while chunk := os.read(out_read, 65536):
            written += chunk
    finally:
        for fd in (stdin_read, stdin_write, out_read):
            os.close(fd)
    assert written == b'{"a":1}\n{"a":2}\n{"b":3}\n{"c":4}\n'


def test_the_relay_asks_the_daemon_for_frames_of_lines() -> None:
    assert rpc_url("http://127.0.0.1:7000", "mock") == "ws://127.0.0.1:7000/v1/rpc?framing=lines&agent=mock"
    assert rpc_url("https://host/base/", None) == "wss://host/base/v1/rpc?framing=lines"
