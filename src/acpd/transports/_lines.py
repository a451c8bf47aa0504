"""Transports layer: the receive loop every byte-stream transport shares: read, split, batch.

It turns a source of byte chunks into batches of frames. Knows no JSON-RPC; the splitting itself
is the pure ``LineDecoder`` of the protocol layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from acpd.protocol.framing import Frame, LineDecoder

READ_CHUNK_BYTES: Final = 1024 * 1024
"""Bytes asked of the source per read: large, so 100,000 small lines arrive in few batches."""


class LineReader:
    """Frames from ``read``, a coroutine returning the next chunk of bytes, or ``b""`` at end of stream."""

    def __init__(self, read: Callable[[], Awaitable[bytes]], max_line_bytes: int) -> None:
        self._read = read
        self._decoder = LineDecoder(max_line_bytes)
        self._lock = asyncio.Lock()  # free (the common case): taken without a yield
        self._eof = False

    async def receive(self) -> list[Frame]:
        """Every complete frame available, at least one.

        Raises:
            anyio.EndOfStream: the source ended (after any final unterminated line).
        """
        async with self._lock:
            while not self._eof:
                chunk = await self._read()
                if not chunk:
                    self._eof = True
                    if frames := self._decoder.finish():
                        return frames
                    break
                if frames := self._decoder.feed(chunk):
                    return frames
            raise anyio.EndOfStream
