"""Transports layer: an in-process Transport pair on anyio memory object streams.

Used by tests and for in-process wiring. It moves frames and nothing else: it never parses or
validates them, so tests can feed a peer garbage (any bytes, or an injected ``FrameTooLong``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Final

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from acpd.errors import ConnectionClosed
from acpd.protocol.framing import Frame

DEFAULT_MAX_BUFFER_FRAMES: Final = 1024
"""Frames one direction holds before ``send`` waits for the reader."""


class MemoryTransport:
    """One end of a pair made by ``create_memory_transport_pair``.

    Like the process and stdio transports, ``send`` raises ``ConnectionClosed`` once either end
    is closed.
    """

    def __init__(
        self, send_stream: MemoryObjectSendStream[Frame], receive_stream: MemoryObjectReceiveStream[Frame]
    ) -> None:
        self._send_stream = send_stream
        self._receive_stream = receive_stream

    async def send(self, frame: bytes) -> None:
        """Deliver one frame (any bytes, valid JSON or not) to the other end."""
        await self.inject(frame)

    async def inject(self, frame: Frame) -> None:
        """Deliver any frame, including a ``FrameTooLong`` a real line decoder would produce.

        Raises:
            ConnectionClosed: this end or the other end is closed.
        """
        # No checkpoint while the buffer has room: a fast producer fills it and the reader then
        # drains it in one batch, which is most of the throughput of a memory pair.
        try:
            try:
                self._send_stream.send_nowait(frame)
            except anyio.WouldBlock:
                await self._send_stream.send(frame)
        except anyio.ClosedResourceError as exc:
            raise ConnectionClosed("this end of the memory transport is closed") from exc
        except anyio.BrokenResourceError as exc:
            raise ConnectionClosed("the other end of the memory transport is closed") from exc

    async def receive(self) -> list[Frame]:
        """Wait for one frame, then take every frame already buffered.

        Raises:
            anyio.EndOfStream: the other end closed (after its frames were read) or this end did.
        """
        try:
            frames = [await self._receive_stream.receive()]
        except anyio.ClosedResourceError:
            raise anyio.EndOfStream from None
        try:
            while True:
                frames.append(self._receive_stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            # EndOfStream here is reported by the next call, once this batch is handled
            return frames

    async def close_sending(self) -> None:
        """Close this end's direction only, as a process closes its stdin and reads on: the other
        end reads ``EndOfStream`` once it has read what was sent, and may still send to this one."""
        self._send_stream.close()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close both directions. Idempotent; the other end then reads ``EndOfStream``."""
        self._send_stream.close()
        self._receive_stream.close()

    async def __aenter__(self) -> MemoryTransport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def create_memory_transport_pair(
    max_buffer: int = DEFAULT_MAX_BUFFER_FRAMES,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected transports: what one sends, the other receives.

    Both ends must be closed (``aclose`` or ``async with``): anyio warns about unclosed streams.
    """
    a_send, b_receive = anyio.create_memory_object_stream[Frame](max_buffer)
    b_send, a_receive = anyio.create_memory_object_stream[Frame](max_buffer)
    return MemoryTransport(a_send, a_receive), MemoryTransport(b_send, b_receive)
