"""Transports layer: the Transport Protocol. Moves frames; knows nothing of JSON-RPC methods."""

from __future__ import annotations

from typing import Protocol

from acpd.protocol.framing import Frame


class Transport(Protocol):
    """A bidirectional stream of JSON messages, one frame each.

    ``send`` takes one encoded message (JSON bytes, no trailing newline) and writes it whole, even
    when called from several tasks at once. ``receive`` returns every frame available now (at least
    one), in arrival order, so the reader can work in batches; a frame is the raw message bytes
    or a ``FrameTooLong``. At end of stream it raises ``anyio.EndOfStream``. ``aclose`` is idempotent.
    A transport may also have ``send_many(frames)``, writing a list of frames in one go, and a
    buffered one ``drain()``, waiting until what was sent is written (its ``aclose`` abandons it).
    """

    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> list[Frame]: ...

    async def aclose(self) -> None: ...
