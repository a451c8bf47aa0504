"""A stream of a session another daemon serves (read from the table, ``sharing.followed``): its
records as SSE, and keep-alive comments while nothing comes, as a stream through the owner sends."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import pytest

from acpd.daemon import sse
from acpd.daemon.sharing import followed
from acpd.protocol.events import EventRecord

pytestmark = pytest.mark.anyio


def record(seq: int) -> EventRecord:
    return EventRecord("s1", seq, "2026-01-02T03:04:05.678Z", "agent", 1, f'{{"n":{seq}}}')


class Table:
    """A store whose follow yields one batch, then the next only when told (``more``)."""

    def __init__(self) -> None:
        self.more = anyio.Event()
        self.ended = anyio.Event()
        self.after: int | None = None

    async def follow(self, session_id: str, *, after: int = 0) -> AsyncGenerator[list[EventRecord], None]:
        self.after = after
        try:
            yield [record(after + 1)]
            await self.more.wait()
            yield [record(after + 2), record(after + 3)]
            await anyio.sleep_forever()
        finally:
            self.ended.set()


async def test_a_followed_stream_sends_keep_alives_while_idle_and_every_record_once_in_order() -> None:
    table = Table()
    stream = followed(table, "s1", 4, keepalive_seconds=0.01)
    chunks: list[bytes] = []
    with anyio.fail_after(10):
        chunks.append(await anext(stream))
        chunks.append(await anext(stream))
        chunks.append(await anext(stream))  # nothing came for a while
        chunks.append(await anext(stream))
        table.more.set()
        while not chunks[-1].startswith(b"id:"):
            chunks.append(await anext(stream))
        await stream.aclose()
        await table.ended.wait()  # closing the stream ends its follow of the table
    assert table.after == 4
    assert chunks[:4] == [b"retry: 1000\n\n", sse.encode([record(5)]), sse.KEEPALIVE, sse.KEEPALIVE]
    assert set(chunks[4:-1]) <= {sse.KEEPALIVE}
    assert chunks[-1] == sse.encode([record(6), record(7)])


async def test_a_followed_stream_closed_between_records_ends_its_follow() -> None:
    table = Table()
    stream = followed(table, "s1", 0, keepalive_seconds=60)
    with anyio.fail_after(10):
        assert await anext(stream) == b"retry: 1000\n\n"
        assert await anext(stream) == sse.encode([record(1)])
        await stream.aclose()
        await table.ended.wait()
