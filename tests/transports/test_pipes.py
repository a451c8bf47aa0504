"""The daemon's streams on a program's pipes: what they read, how they close, how the loop watches them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from acpd.transports.contained import PipeReceiveStream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    # The plain asyncio loop: its selector can be counted (uvloop's is inside libuv).
    return ("asyncio", {"use_uvloop": False})


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):  # the stream closed its end itself
            os.close(fd)


class CountingSelector(selectors.DefaultSelector):
    """Counts the registrations the event loop makes for one descriptor."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.changes = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.changes += fileobj == self.fd
        return super().register(fileobj, events, data)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.changes += fileobj == self.fd
        return super().modify(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        self.changes += fileobj == self.fd
        return super().unregister(fileobj)


def selector_of(loop: asyncio.AbstractEventLoop) -> selectors.BaseSelector:
    selector = getattr(loop, "_selector", None)
    assert isinstance(selector, selectors.BaseSelector)
    return selector


async def test_a_pipe_stream_reads_every_byte_in_order_then_ends(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    stream = PipeReceiveStream(read_fd)
    sent = bytes(range(256)) * 4096  # 1 MiB: many times a pipe's buffer

    def write_all() -> None:
        os.write(write_fd, sent)
        os.close(write_fd)

    received = bytearray()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, write_all)
            while True:
                try:
                    received += await stream.receive()
                except anyio.EndOfStream:
                    break
    await stream.aclose()
    assert bytes(received) == sent


async def test_closing_a_pipe_stream_wakes_its_waiting_reader_with_closed_resource_error(
    pipe: tuple[int, int],
) -> None:
    stream = PipeReceiveStream(pipe[0])
    outcome: list[type[BaseException]] = []

    async def read() -> None:
        try:
            await stream.receive()
        except anyio.ClosedResourceError as exc:
            outcome.append(type(exc))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await stream.aclose()
    assert outcome == [anyio.ClosedResourceError]
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()


async def test_a_pipe_stream_is_watched_once_across_many_waits(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    loop = asyncio.get_running_loop()
    counting = CountingSelector(read_fd)
    original = selector_of(loop)
    loop._selector = counting  # type: ignore[attr-defined]
    stream = PipeReceiveStream(read_fd)
    try:
        with anyio.fail_after(10):
            for index in range(50):
                # A reply that arrives only after the reader waits: every round waits once.
                loop.call_soon(os.write, write_fd, b"%d\n" % index)
                assert await stream.receive() == b"%d\n" % index
        assert counting.changes == 1  # registered at the first wait, never changed since
        await stream.aclose()
        assert counting.changes == 2  # and unregistered at the close
    finally:
        loop._selector = original  # type: ignore[attr-defined]
        counting.close()


async def test_a_readable_pipe_nobody_reads_stops_waking_the_loop_and_is_read_later(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    loop = asyncio.get_running_loop()
    stream = PipeReceiveStream(read_fd)
    with anyio.fail_after(5):
        loop.call_soon(os.write, write_fd, b"first")
        assert await stream.receive() == b"first"
        os.write(write_fd, b"unread")
        for _ in range(10):  # a few turns of the loop with nobody reading
            await anyio.lowlevel.checkpoint()
        assert read_fd not in selector_of(loop).get_map()
        assert await stream.receive() == b"unread"
        loop.call_soon(os.write, write_fd, b"after")
        assert await stream.receive() == b"after"
    await stream.aclose()


async def test_two_readers_of_one_pipe_stream_are_refused(pipe: tuple[int, int]) -> None:
    stream = PipeReceiveStream(pipe[0])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stream.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await stream.receive()
            tasks.cancel_scope.cancel()
    await stream.aclose()
