"""Transports layer: this process's own stdin/stdout as a Transport (``acpd acp`` serving an editor).

The descriptors may be pipes, ttys, sockets or regular files: asyncio's pipe transports refuse
regular files, so every blocking call runs in a worker thread instead. A thread parks in
``poll`` on the descriptor *and* on a wake-up pipe, so ``aclose`` releases it at once and a
cancelled read never swallows bytes (the thread only waits; the read happens afterwards).
Knows no JSON-RPC methods and never parses a frame; imports only the protocol layer and
``acpd.errors``. Never closes the descriptors it was given: they belong to the process.
"""

from __future__ import annotations

import contextlib
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

HIGH_WATER_BYTES: Final = 1 << 20
"""Queued output past which ``send`` waits for the writer: backpressure from a slow reader."""
DRAIN_SECONDS: Final = 5.0
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
    """Frames over two raw descriptors. Build it with ``open_stdio_transport``.

    Writes are buffered: ``send`` queues a frame and returns while less than
    ``HIGH_WATER_BYTES`` wait, and a writer task writes everything queued in one system call.
    A worker-thread hop per frame would cap an editor's stream at a few thousand updates a
    second, since the JSON-RPC peer sends one frame at a time.
    """

    def __init__(self, stdin_fd: int, stdout_fd: int, max_line_bytes: int) -> None:
        self._stdin_fd = stdin_fd
        self._stdout_fd = stdout_fd
        self._lines = LineReader(self._read, max_line_bytes)
        self._waker = _Waker()
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._writing = False
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._closed = False
        self._error: str | None = None

    async def send(self, frame: bytes) -> None:
        """Queue one message and its newline; wait only while the queue is over the high-water mark.

        A frame is never torn: once its write starts it completes, or the transport closes.

        Raises:
            ConnectionClosed: the transport is closed, or writing failed (the reader went away);
                a frame queued just before a failure may be lost without this being raised.
        """
        self._check_open()
        self._queue += (frame, b"\n")
        self._queued_bytes += len(frame) + 1
        self._wake.set()
        while self._queued_bytes > HIGH_WATER_BYTES:
            await self._wait_progress()
        await anyio.lowlevel.checkpoint()

    async def drain(self) -> None:
        """Wait until everything queued is written. Raises ``ConnectionClosed`` if it cannot be."""
        while self._queue or self._writing:
            await self._wait_progress()
        self._check_open()

    def _check_open(self) -> None:
        if self._error is not None:
            raise ConnectionClosed(self._error)
        if self._closed:
            raise ConnectionClosed("stdout is closed")

    async def _wait_progress(self) -> None:
        self._check_open()
        progress = self._progress
        await progress.wait()
        self._check_open()

    async def run_writer(self) -> None:
        """Write queued frames, batch by batch, until closed and drained or writing fails."""
        while self._error is None:
            if not self._queue:
                if self._closed:
                    return
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch, self._queue = b"".join(self._queue), []
            self._queued_bytes = 0
            self._writing = True
            try:
                with anyio.CancelScope(shield=True):
                    if not await anyio.to_thread.run_sync(_write_all, self._stdout_fd, batch, self._waker):
                        self._error = "stdout closed while writing"
            except OSError as exc:
                self._error = f"stdout failed: {exc.strerror or exc}"
            finally:
                self._writing = False
                progress, self._progress = self._progress, anyio.Event()
                progress.set()

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
        """Stop using the descriptors (they stay open) and release every parked thread at once,
        abandoning unwritten frames; idempotent. ``open_stdio_transport`` drains first."""
        if not self._closed:
            self._closed = True
            self._waker.set()
            self._wake.set()
            progress, self._progress = self._progress, anyio.Event()
            progress.set()
        await anyio.lowlevel.checkpoint()


@asynccontextmanager
async def open_stdio_transport(
    *, stdin_fd: int = 0, stdout_fd: int = 1, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[StdioTransport]:
    """This process's stdin and stdout as a Transport, closed (not the descriptors) on exit,
    after what was sent is written (for at most ``DRAIN_SECONDS``: the reader may be stuck)."""
    transport = StdioTransport(stdin_fd, stdout_fd, max_line_bytes)
    async with anyio.create_task_group() as tg:
        tg.start_soon(transport.run_writer)
        try:
            yield transport
        finally:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(DRAIN_SECONDS),
                contextlib.suppress(ConnectionClosed),
            ):
                await transport.drain()
            await transport.aclose()
