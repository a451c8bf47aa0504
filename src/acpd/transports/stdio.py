"""Transports layer: this process's own stdin/stdout as a Transport (``acpd acp`` serving an editor).

The descriptors may be pipes, ttys, sockets or regular files: asyncio's pipe transports refuse
regular files, so every blocking call runs in a worker thread instead. A thread parks in
``poll`` on the descriptor *and* on a wake-up pipe, so ``aclose`` releases it at once and a
cancelled read never swallows bytes (the thread only waits; the read happens afterwards).
Knows no JSON-RPC methods and never parses a frame; imports only the protocol layer and
``acpd.errors``. Never closes the descriptors it was given: they belong to the process.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio
import anyio.lowlevel

from acpd.errors import ConnectionClosed
from acpd.protocol.framing import MAX_LINE_BYTES, Frame
from acpd.transports._lines import READ_CHUNK_BYTES, LineReader

logger = logging.getLogger(__name__)

WRITE_PIECE_BYTES: Final = select.PIPE_BUF
"""After ``poll`` reports a pipe writable, a write this small cannot block, so a stuck reader
on the other end can never pin a thread past ``aclose``."""


class _Waker:
    """A one-shot latch that wakes every thread parked in ``poll``.

    Its pipe is closed by whoever leaves last (the owner or a parked thread), never under a
    thread still polling it: a closed and reused descriptor number would wake the wrong party.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        self._users = 1  # the owner
        self._is_set = False
        self._lock = threading.Lock()

    def enter(self) -> int | None:
        """Join as a user: the descriptor to poll, or ``None`` once the latch is set."""
        with self._lock:
            if self._is_set:
                return None
            self._users += 1
            return self._read_fd

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                os.close(self._read_fd)
                os.close(self._write_fd)

    def set(self) -> None:
        with self._lock:
            if self._is_set:
                return
            self._is_set = True
            os.write(self._write_fd, b"\0")
        self.leave()


def _poll_ready(fd: int, events: int, wake_fd: int) -> bool:
    """Block until ``fd`` is ready (or in error, which the next call reports); False if woken."""
    poller = select.poll()
    poller.register(fd, events)
    poller.register(wake_fd, select.POLLIN)
    return all(ready != wake_fd for ready, _ in poller.poll())


def _wait_readable(fd: int, waker: _Waker) -> bool:
    wake_fd = waker.enter()
    if wake_fd is None:
        return False
    try:
        return _poll_ready(fd, select.POLLIN, wake_fd)
    finally:
        waker.leave()


def _write_all(fd: int, data: bytes, waker: _Waker) -> bool:
    """Write everything unless woken first. Raises OSError (e.g. BrokenPipeError)."""
    wake_fd = waker.enter()
    if wake_fd is None:
        return False
    try:
        view = memoryview(data)
        while view:
            if not _poll_ready(fd, select.POLLOUT, wake_fd):
                return False
            try:
                view = view[os.write(fd, view[:WRITE_PIECE_BYTES]) :]
            except BlockingIOError:
                continue  # a non-blocking descriptor lost the race; poll again
        return True
    finally:
        waker.leave()


class StdioTransport:
    """Frames over two raw descriptors. Build it with ``open_stdio_transport``."""

    def __init__(self, stdin_fd: int, stdout_fd: int, max_line_bytes: int) -> None:
        self._stdin_fd = stdin_fd
        self._stdout_fd = stdout_fd
        self._lines = LineReader(self._read, max_line_bytes)
        self._waker = _Waker()
        self._write_lock = anyio.Lock()
        self._queue: list[bytes] = []
        self._queued_frames = 0
        self._written_frames = 0
        self._closed = False
        self._broken = False

    async def send(self, frame: bytes) -> None:
        """Write one message and its newline; concurrent senders share one write.

        A frame is never torn: once its write starts it completes, or the transport closes. A
        send cancelled while queued behind another may still be delivered.

        Raises:
            ConnectionClosed: the transport is closed, or the reader went away.
        """
        if self._closed or self._broken:
            raise ConnectionClosed("stdout is closed")
        ticket = self._queued_frames
        self._queued_frames += 1
        self._queue += (frame, b"\n")
        async with self._write_lock:
            if self._written_frames > ticket:
                return  # an earlier holder of the lock wrote it with its own batch
            if self._broken:
                raise ConnectionClosed("stdout is closed")
            await self._flush()

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        count = self._queued_frames - self._written_frames
        try:
            with anyio.CancelScope(shield=True):
                written = await anyio.to_thread.run_sync(_write_all, self._stdout_fd, b"".join(batch), self._waker)
        except OSError as exc:
            self._broken = True
            raise ConnectionClosed(f"stdout failed: {exc.strerror or exc}") from exc
        if not written:
            self._broken = True
            raise ConnectionClosed("stdout closed while writing")
        self._written_frames += count

    async def receive(self) -> list[Frame]:
        """Every complete frame available, at least one.

        Raises:
            anyio.EndOfStream: stdin ended (after any final unterminated line), or the transport is closed.
        """
        return await self._lines.receive()

    async def _read(self) -> bytes:
        while True:
            # Only the wait may be abandoned on cancellation: it consumes nothing.
            if not await anyio.to_thread.run_sync(_wait_readable, self._stdin_fd, self._waker, abandon_on_cancel=True):
                return b""
            try:
                return await anyio.to_thread.run_sync(os.read, self._stdin_fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                continue
            except OSError:
                logger.warning(
                    "reading stdin (fd %d) failed; treating it as end of stream", self._stdin_fd, exc_info=True
                )
                return b""

    async def aclose(self) -> None:
        """Stop using the descriptors (they stay open) and release every parked thread; idempotent."""
        if not self._closed:
            self._closed = True
            self._waker.set()
        await anyio.lowlevel.checkpoint()


@asynccontextmanager
async def open_stdio_transport(
    *, stdin_fd: int = 0, stdout_fd: int = 1, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[StdioTransport]:
    """This process's stdin and stdout as a Transport, closed (not the descriptors) on exit."""
    transport = StdioTransport(stdin_fd, stdout_fd, max_line_bytes)
    try:
        yield transport
    finally:
        await transport.aclose()
