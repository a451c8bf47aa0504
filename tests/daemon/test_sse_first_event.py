"""A burst's first events reach a reader at once: the log commits a burst in batches that start
small and double, and the SSE stream writes each committed batch as it comes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

import anyio
import pytest

from acpd.daemon import sse
from acpd.daemon.log import FIRST_BATCH_RECORDS, MAX_BATCH_RECORDS, SessionLog
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc
from acpd.store.memory import MemoryEventStore

pytestmark = pytest.mark.anyio

BURST = 10_000


class GatedStore(MemoryEventStore):
    """Commits the first transaction at once; every later one waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.release = anyio.Event()

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        if self.sizes:
            await self.release.wait()
        self.sizes.append(len(records))
        await super().append_many(records, sessions=sessions)


def burst(log: SessionLog) -> None:
    for n in range(BURST):
        log.append("agent", 1, f'{{"n":{n}}}')


async def test_the_first_batch_of_a_burst_commits_alone_and_the_next_ones_double() -> None:
    store = GatedStore()
    log = SessionLog(store, "s", 0)
    burst(log)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        with anyio.fail_after(5):
            first = await anext(aiter(log.follow(0)))
        assert [r.seq for r in first] == list(range(1, FIRST_BATCH_RECORDS + 1))
        store.release.set()
        with anyio.fail_after(5):
            await log.wait_committed(BURST)
        log.close()
    expected, size, left = [], FIRST_BATCH_RECORDS, BURST
    while left:
        expected.append(min(size, left))
        left -= expected[-1]
        size = min(2 * size, MAX_BATCH_RECORDS)
    assert store.sizes == expected


async def test_an_sse_reader_gets_the_first_events_of_a_burst_while_the_rest_is_still_uncommitted() -> None:
    store = GatedStore()
    log = SessionLog(store, "s", 0)
    burst(log)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        stream = sse.stream_log(log, 0)
        assert isinstance(stream, AsyncGenerator)
        with anyio.fail_after(5):
            assert await anext(stream) == b"retry: 1000\n\n"
            first = await anext(stream)
        assert first.startswith(b"id: 1\n") and first.count(b"\nid: ") == FIRST_BATCH_RECORDS - 1
        assert log.committed_seq == FIRST_BATCH_RECORDS < BURST
        store.release.set()
        await stream.aclose()
        log.close()
