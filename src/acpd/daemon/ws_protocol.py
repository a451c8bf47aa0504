"""Daemon layer: uvicorn's WebSocket protocol, with the handshakes it refuses answered as problems
(see ``http_protocol``, which imports this module at the first upgrade), writes coalesced, and
permessage-deflate offered only where it pays. It changes nothing else.

Coalesced writes: uvicorn writes each message with its own ``transport.write``, which on an idle
socket is a system call each. ``CoalescingTransport`` gathers the writes made in one turn of the
event loop and sends them in one call (at once past ``FLUSH_BYTES``, so flow control still sees
large bursts). Deflate: compressing every message costs the daemon more CPU than a loopback link
saves; it is offered to clients that connect from another host only. Text frames: the ACP face
writes its messages through ``write_text`` (offered in the scope's extensions) when no extension
is on, skipping uvicorn's and websockets' per-message work.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
from typing import Any, Final, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from .http_protocol import TEXT_FRAMES_EXTENSION, problem_bytes
from .problems import MEDIA_TYPE

FLUSH_BYTES: Final = 256 * 1024
"""Gathered bytes past which a write goes out at once instead of at the end of the loop's turn."""


class CoalescingTransport:
    """An ``asyncio.Transport`` stand-in whose writes in one loop turn go out as one write.

    Everything but ``write`` and ``close`` is the wrapped transport's; ``close`` (and
    ``write_eof``, ``abort`` drops) sends what is gathered first, so no byte is lost or reordered.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []
        self._size = 0
        self.writes = 0
        """Writes made to the wrapped transport (for tests)."""

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._chunks:
            self._loop.call_soon(self.flush)
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._chunks:
            return
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if not self._transport.is_closing():
            self.writes += 1
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._chunks.clear()
        self._size = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ProblemWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets builds every refusal (its own, and uvicorn's 403/500) with reject()
        self.conn.reject = _problem_reject  # type: ignore[method-assign]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        if scope is not None:
            extensions = cast("dict[str, object]", scope["extensions"])
            extensions[TEXT_FRAMES_EXTENSION] = {"write": self.write_text}

    def write_text(self, data: bytes) -> bool:
        """Write one text message (UTF-8 ``data``, which the caller encoded) as a single frame,
        without the ASGI send, its checks and websockets' frame objects: a few microseconds a
        message less. False, with nothing written, where that path does not apply (the handshake
        is not done, the connection is closing, writing is paused, or an extension such as
        deflate is on): the caller then sends through ASGI, which handles all of those."""
        conn = self.conn
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or conn.extensions
            or conn.expect_continuation_frame
            or conn.state is not State.OPEN
            or not self.writable.is_set()
        ):
            return False
        size = len(data)
        if size < 126:
            header = bytes((0x81, size))
        elif size < 65536:
            header = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + size.to_bytes(8, "big")
        self.transport.write(header + data if size < 4096 else header)
        if size >= 4096:
            self.transport.write(data)  # no copy of a large payload
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they are transports
        coalescing = CoalescingTransport(cast("asyncio.Transport", transport), self.loop)
        super().connection_made(cast("asyncio.Transport", coalescing))
        if self.client is None or is_loopback(self.client[0]):
            self.conn.available_extensions = []  # deflate costs more CPU than it saves here


def is_loopback(host: str) -> bool:
    """True for a loopback address (``127.0.0.0/8``, ``::1``, an IPv4-mapped one); False for
    anything else, a name included."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def _problem_reject(status: http.HTTPStatus | int, text: str) -> Response:
    status = http.HTTPStatus(status)
    body = problem_bytes(status.value, text.strip() or f"the WebSocket handshake was refused ({status.phrase})")
    headers = Headers([("Connection", "close"), ("Content-Length", str(len(body))), ("Content-Type", MEDIA_TYPE)])
    return Response(status.value, status.phrase, headers, body)
