"""The in-memory transport pair: frames in order, batches, end of stream, closing."""

from __future__ import annotations

import anyio
import pytest

from acpd.errors import ConnectionClosed
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.transports.base import Transport
from acpd.transports.memory import create_memory_transport_pair

pytestmark = pytest.mark.anyio


async def test_frames_arrive_in_order_and_in_one_batch_when_buffered() -> None:
    left, right = create_memory_transport_pair()
    transport: Transport = left  # mypy checks that MemoryTransport implements the Protocol
    async with left, right:
        for index in range(5):
            await transport.send(b'{"n":%d}' % index)
        for index in range(5, 7):
            await left.send(b'{"n":%d}' % index)
        with anyio.fail_after(5):
            assert await right.receive() == [b'{"n":%d}' % index for index in range(7)]


async def test_both_directions_are_independent() -> None:
    left, right = create_memory_transport_pair()
    async with left, right:
        await left.send(b"to-right")
        await right.send(b"to-left")
        with anyio.fail_after(5):
            assert await left.receive() == [b"to-left"]
            assert await right.receive() == [b"to-right"]


async def test_receive_waits_for_the_first_frame() -> None:
    left, right = create_memory_transport_pair()
    received: list[Frame] = []
    async with left, right, anyio.create_task_group() as tg:

        async def reader() -> None:
            received.extend(await right.receive())

        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        assert received == []
        await left.send(b"late")
    assert received == [b"late"]


async def test_any_bytes_and_frame_too_long_can_be_injected() -> None:
    left, right = create_memory_transport_pair()
    async with left, right:
        await left.send(b"\xff not json")
        await left.inject(FrameTooLong(99))
        with anyio.fail_after(5):
            assert await right.receive() == [b"\xff not json", FrameTooLong(99)]


async def test_closing_one_end_gives_end_of_stream_after_the_buffered_frames() -> None:
    left, right = create_memory_transport_pair()
    await left.send(b"last words")
    await left.aclose()
    with anyio.fail_after(5):
        assert await right.receive() == [b"last words"]
        with pytest.raises(anyio.EndOfStream):
            await right.receive()
    await right.aclose()


async def test_aclose_is_idempotent_and_wakes_a_pending_receive_on_the_same_end() -> None:
    left, right = create_memory_transport_pair()
    outcome: list[str] = []

    async def reader() -> None:
        with pytest.raises(anyio.EndOfStream):
            await left.receive()
        outcome.append("eof")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await left.aclose()
            await left.aclose()
    await right.aclose()
    assert outcome == ["eof"]


async def test_send_after_either_end_closed_raises_connection_closed() -> None:
    left, right = create_memory_transport_pair()
    await right.aclose()
    with pytest.raises(ConnectionClosed, match="other end"):
        await left.send(b"nobody listens")
    await left.aclose()
    with pytest.raises(ConnectionClosed, match="this end"):
        await left.send(b"closed here")


async def test_send_waits_when_the_buffer_is_full() -> None:
    left, right = create_memory_transport_pair(max_buffer=1)
    sent: list[bytes] = []
    async with left, right, anyio.create_task_group() as tg:

        async def writer() -> None:
            for frame in (b"1", b"2"):
                await left.send(frame)
                sent.append(frame)

        tg.start_soon(writer)
        await anyio.wait_all_tasks_blocked()
        assert sent == [b"1"]
        with anyio.fail_after(5):
            # the blocked writer's frame is taken in the same batch
            assert await right.receive() == [b"1", b"2"]
    assert sent == [b"1", b"2"]
