"""Following a PostgreSQL log live from another store (as another daemon would): woken by the
writer's commits, reading from the table, every record once and in order, whatever happens to the
listening connection; and a store that only reads refuses writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import pytest

from acpd.errors import StoreError
from acpd.protocol.events import EventRecord
from acpd.store.postgres import PostgresEventStore
from tests.postgres import postgres_dsn
from tests.store.helpers import doc, log

pytestmark = pytest.mark.anyio
__all__ = ["postgres_dsn"]


async def collect(stream: AsyncIterator[list[EventRecord]], until: int, into: list[EventRecord]) -> None:
    """Records from ``stream`` into ``into`` until the one with seq ``until``."""
    async for batch in stream:
        into.extend(batch)
        if batch[-1].seq >= until:
            return


async def test_a_reader_store_follows_what_the_writer_commits_once_each_and_in_order(postgres_dsn: str) -> None:
    async with (
        await PostgresEventStore.open(postgres_dsn) as writer,
        await PostgresEventStore.open(postgres_dsn, writer=False) as reader,
    ):
        await writer.append(log("s1", 1, 5), session=doc("s1"))
        seen: list[EventRecord] = []
        late: list[EventRecord] = []
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, reader.follow("s1"), 3_000, seen)
                tg.start_soon(collect, reader.follow("s1", after=3), 3_000, late)
                for first in range(6, 3_000, 97):  # commits of every size while they follow
                    await writer.append(log("s1", first, min(first + 96, 3_000)))
                    await writer.append(log("other", first - 5, min(first + 96, 3_000) - 5))
        assert seen == log("s1", 1, 3_000)
        assert late == log("s1", 4, 3_000)


async def test_a_follower_whose_listening_connection_breaks_still_gets_every_record(postgres_dsn: str) -> None:
    async with (
        await PostgresEventStore.open(postgres_dsn) as writer,
        await PostgresEventStore.open(postgres_dsn, writer=False) as reader,
    ):
        await writer.append(log("s1", 1, 100), session=doc("s1"))
        seen: list[EventRecord] = []
        with anyio.fail_after(20):
            async with aclosing(reader.follow("s1")) as stream:
                seen += await anext(stream)  # it listens before it reads
                assert await cut_listeners(postgres_dsn) == 1
                await writer.append(log("s1", len(seen) + 1, 200))
                await collect(stream, 200, seen)
        assert seen == log("s1", 1, 200)


async def cut_listeners(dsn: str) -> int:
    """Terminate the connections that listen for commits; how many there were."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        cut: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        return cut
    finally:
        await conn.close()


async def test_a_store_that_only_reads_refuses_writes_and_takes_no_lock(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn, writer=False) as reader:
        with pytest.raises(StoreError, match="only reads"):
            await reader.append(log("s1", 1, 1), session=doc("s1"))
        with pytest.raises(StoreError, match="only reads"):
            await reader.delete_session("s1")
        async with await PostgresEventStore.open(postgres_dsn) as writer:  # the database is not locked by it
            await writer.append(log("s1", 1, 2), session=doc("s1"))
        assert await reader.read("s1") == log("s1", 1, 2)
        assert (await reader.get_session("s1")) == doc("s1")
