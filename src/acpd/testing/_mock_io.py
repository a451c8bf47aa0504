"""Test kit: the mock agent's stdio channel. Stdlib only; moves bytes and knows no JSON-RPC.

The mock agent must start fast, so it uses plain asyncio pipe transports rather than anyio or
acpd's own transports. Pipes, sockets and terminals get non-blocking transports. A regular file
(``mock_agent < frames.jsonl > out.jsonl``) or ``/dev/null`` cannot be watched by the event loop,
so it is read and written directly, which never blocks for long on such a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import stat
import sys
from typing import BinaryIO, Final

logger = logging.getLogger(__name__)

READ_SIZE_BYTES: Final = 1024 * 1024
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
"""Longest accepted input line; longer ones are dropped and answered with a parse error."""
FLUSH_TIMEOUT_SECONDS: Final = 5.0
"""How long exit and ``crash`` wait for the client to read what is still buffered."""


class _WriteProtocol(asyncio.BaseProtocol):
    """Flow control for the stdout pipe: ``wait_writable`` blocks while the transport is paused."""

    def __init__(self) -> None:
        self._paused = False
        self.lost = False
        self._waiters: list[asyncio.Future[None]] = []

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._paused = False
        self._wake()

    async def wait_writable(self) -> None:
        if not self._paused:
            return
        # One future per waiter: a cancelled waiter must not cancel the others' wake-up.
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class StdioChannel:
    """The process's stdin and stdout as an async byte channel."""

    def __init__(self, stdin_fd: int, stdout_fd: int) -> None:
        self._stdin_fd = stdin_fd
        self._stdout_fd = stdout_fd
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._protocol = _WriteProtocol()
        self._nonblocking_fds: list[int] = []

    @classmethod
    async def open(cls, stdin_fd: int = 0, stdout_fd: int = 1) -> StdioChannel:
        """Wrap the two descriptors; each gets an event-loop transport unless it is a plain file."""
        channel = cls(stdin_fd, stdout_fd)
        loop = asyncio.get_running_loop()
        if not _is_plain_file(stdin_fd):
            reader = asyncio.StreamReader(limit=READ_SIZE_BYTES)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), _borrow(stdin_fd))
            channel._reader = reader
            channel._nonblocking_fds.append(stdin_fd)
        if not _is_plain_file(stdout_fd):
            transport, _ = await loop.connect_write_pipe(lambda: channel._protocol, _borrow(stdout_fd, writable=True))
            channel._transport = transport
            channel._nonblocking_fds.append(stdout_fd)
        return channel

    async def read(self) -> bytes:
        """The next bytes from stdin; ``b""`` at end of input."""
        if self._reader is None:
            return os.read(self._stdin_fd, READ_SIZE_BYTES)
        return await self._reader.read(READ_SIZE_BYTES)

    def write(self, data: bytes) -> None:
        """Queue bytes for stdout. Callers pass whole lines so that writers never interleave mid-line."""
        if self._transport is None:
            _write_all(self._stdout_fd, data)
        elif not self._protocol.lost:
            self._transport.write(data)

    async def drain(self) -> None:
        """Wait while the client reads slower than we write."""
        await self._protocol.wait_writable()

    async def flush(self) -> None:
        """Wait (bounded) until everything written has reached the pipe."""
        if self._transport is None or self._protocol.lost:
            return
        # Zero limits make the transport pause now and resume only once its buffer is empty.
        self._transport.set_write_buffer_limits(high=0, low=0)
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_SECONDS):
                await self._protocol.wait_writable()
        except TimeoutError:
            logger.warning("stdout not drained after %s s; the client stopped reading", FLUSH_TIMEOUT_SECONDS)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        # A terminal shares its file description with the shell: leave it blocking as we found it.
        for fd in self._nonblocking_fds:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)


class LineSplitter:
    """Splits a byte stream into lines. An overlong line comes out as ``None`` instead of its bytes."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._overlong = False

    def feed(self, data: bytes) -> list[bytes | None]:
        lines: list[bytes | None] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._append(data[start:end])
            lines.append(self._take())
            start = end + 1
        self._append(data[start:])
        return lines

    def finish(self) -> list[bytes | None]:
        """At end of input: the unterminated last line, if any."""
        if self._overlong or self._buffer.strip():
            return [self._take()]
        return []

    def _append(self, piece: bytes) -> None:
        if self._overlong:
            return
        if len(self._buffer) + len(piece) > self._max:
            self._overlong = True
            self._buffer.clear()
        else:
            self._buffer += piece

    def _take(self) -> bytes | None:
        line = None if self._overlong else bytes(self._buffer)
        self._buffer.clear()
        self._overlong = False
        return line


def write_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


STDERR_FLOOD_LINE: Final = b"mock agent stderr flood " + b"." * 39 + b"\n"
"""64 bytes: ``stderr-flood`` writes whole lines of it, then a shorter last one."""


def write_stderr_bytes(count: int) -> None:
    """Write ``count`` bytes of lines to stderr, in large blocks (blocking: call it from a thread)."""
    block = STDERR_FLOOD_LINE * (1024 * 1024 // len(STDERR_FLOOD_LINE))
    sys.stderr.flush()
    while count > 0:
        piece = memoryview(block)[: min(count, len(block))]
        while piece:
            try:
                piece = piece[os.write(2, piece) :]
            except BlockingIOError:
                select.select([], [2], [])
        count -= min(count, len(block))


def _is_plain_file(fd: int) -> bool:
    """A regular file, or a device such as /dev/null that epoll refuses (only terminals are watchable)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(fd))


def _borrow(fd: int, *, writable: bool = False) -> BinaryIO:
    # The transport owns the file object; closefd=False keeps fd 0/1 open for the interpreter.
    return open(fd, "wb" if writable else "rb", buffering=0, closefd=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
