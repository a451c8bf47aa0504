"""Daemon layer: uvicorn's protocols, with the refusals they make on their own answered as
problems instead of plain text: a request httptools cannot parse (request line, headers, chunked
body), and a WebSocket handshake websockets refuses (no or a bad ``Sec-WebSocket-Key``, an
unsupported version) or that the app closed before accepting. It changes nothing else and knows
no route; everything the app sees, the app answers. One more thing, for speed: a response's head
and body leave in one write (one system call, one wake-up of the client) instead of two. The
WebSocket protocol (``ws_protocol``) is imported at the first upgrade: websockets and uvicorn's
protocol on it are ~20 ms of the start."""

from __future__ import annotations

import asyncio
from typing import Any, Final, cast

from acpd.protocol import jsonio

from .problems import MEDIA_TYPE, problem_body
from .uvicorn_parts import HttpToolsProtocol

KINDS: Final = {400: "malformed-request", 403: "forbidden", 426: "upgrade-required", 500: "internal-error"}


MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024
"""A WebSocket message's limit, the same as a stdio line's. ``serve`` gives uvicorn this limit,
which closes the connection with 1009 (message too big) on a longer frame; under a server without
such a limit, ``ws`` answers a longer message as too long."""
TEXT_FRAMES_EXTENSION: Final = "acpd.websocket.text_frames"
"""The ASGI scope extension through which ``ws_protocol`` offers the app a direct text-frame writer."""


def problem_bytes(status: int, detail: str) -> bytes:
    return jsonio.dumps(problem_body(status, KINDS.get(status, "websocket-refused"), detail))


class _CoalescingTransport:
    """A transport whose writes made in one turn of the event loop leave together.

    uvicorn writes a response's head when the app starts it and its body when the app sends it,
    both in the same turn of the loop for an ordinary response: two system calls, and two wake-ups
    of the client. Here a write is held until the next one (then both go at once) or until the end
    of the current turn of the loop (``call_soon``), so nothing waits longer than that.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._held = None
        self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast("asyncio.Transport", _CoalescingTransport(transport)))

    def send_400_response(self, msg: str) -> None:
        body = problem_bytes(400, f"the HTTP request could not be parsed: {msg}")
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + MEDIA_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def websocket_protocol(**kwargs: Any) -> asyncio.Protocol:
    """What uvicorn makes of a connection it upgrades (it calls its ``ws`` setting with these
    arguments): ``ws_protocol.ProblemWebSocketProtocol``, imported the first time."""
    from .ws_protocol import ProblemWebSocketProtocol

    return ProblemWebSocketProtocol(**kwargs)
