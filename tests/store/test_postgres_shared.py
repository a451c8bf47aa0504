"""Daemons sharing one PostgreSQL database: each session has one writer at a time (a lock per
session on its owner's connection), the others are refused its writes with its owner's address,
and a session is free for another daemon the moment its owner lets go or dies."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from acpd.errors import StoreError, StoreLocked
from acpd.store._pg_schema import OWNER_WAIT_SECONDS
from acpd.store.postgres import PostgresEventStore
from acpd.testing import tcp_proxy
from tests.postgres import NOTE_TRIGGER, notes_of, port_of, postgres_dsn, side_sql, through, wait_free
from tests.store.helpers import doc, log

pytestmark = pytest.mark.anyio
__all__ = ["postgres_dsn"]


async def test_daemons_sharing_a_database_each_write_only_the_sessions_they_hold(postgres_dsn: str) -> None:
    async with (
        await PostgresEventStore.open(postgres_dsn, shared=True) as a,
        await PostgresEventStore.open(postgres_dsn, shared=True) as b,
    ):
        await a.note_owner({"url": "http://10.0.0.1:4520"})
        await a.append(log("s1", 1, 3), session=doc("s1"))  # a write claims its session
        with pytest.raises(StoreLocked, match=r"session 's1' is another daemon's .* serving http://10.0.0.1:4520"):
            await b.append(log("s1", 4, 4))
        assert not await b.claim("s1")
        await b.append(log("s2", 1, 2), session=doc("s2"))
        assert await b.read("s1") == log("s1", 1, 3)  # anyone reads
        owner = await b.owner_of("s1")
        assert owner is not None and owner["url"] == "http://10.0.0.1:4520"
        assert await a.owner_of("nobody's") is None
        await a.append(log("s1", 4, 5))
        assert await a.read("s1") == log("s1", 1, 5)


async def test_a_session_is_another_daemons_once_its_owner_lets_go(postgres_dsn: str) -> None:
    async with (
        await PostgresEventStore.open(postgres_dsn, shared=True) as a,
        await PostgresEventStore.open(postgres_dsn, shared=True) as b,
    ):
        await a.append(log("s1", 1, 3), session=doc("s1", title="one"))
        await a.release("s1")
        assert await b.claim("s1")
        await b.append(log("s1", 4, 6), session=doc("s1", title="two"))  # on from what a committed
        with pytest.raises(StoreLocked):
            await a.append(log("s1", 7, 7))
        assert await a.read("s1") == log("s1", 1, 6)
        assert await a.get_session("s1") == doc("s1", title="two")


async def test_when_a_daemon_is_cut_off_its_sessions_are_free_at_once_and_it_cannot_write_them_again(
    postgres_dsn: str,
) -> None:
    async with (
        tcp_proxy.serving([("127.0.0.1", port_of(postgres_dsn))]) as proxy,
        await PostgresEventStore.open(through(postgres_dsn, proxy.port), shared=True) as a,
        await PostgresEventStore.open(postgres_dsn, shared=True) as b,
    ):
        lost: list[str] = []
        a.on_lost = lost.extend
        await a.append(log("s1", 1, 3), session=doc("s1"))
        await proxy.cut()  # a's connections: as when its machine is cut off (or its process dies)
        with anyio.fail_after(OWNER_WAIT_SECONDS * 4):
            await wait_free(postgres_dsn, "s1")
            assert await b.claim("s1")
        await b.append(log("s1", 4, 6))
        proxy.restore()
        with anyio.fail_after(OWNER_WAIT_SECONDS * 4), pytest.raises(StoreLocked):
            await a.append(log("s1", 4, 4))  # a connects again, and finds the session b's
        assert lost == ["s1"]  # and says so (the daemon lets it go)
        assert await b.read("s1") == log("s1", 1, 6)


async def test_a_daemon_whose_connection_broke_takes_its_sessions_again_at_once(postgres_dsn: str) -> None:
    async with (
        await PostgresEventStore.open(postgres_dsn, shared=True) as a,
        await PostgresEventStore.open(postgres_dsn, shared=True) as b,
    ):
        await a.note_owner({"url": "http://a"})
        await a.append(log("s1", 1, 3), session=doc("s1"))
        owner = await b.owner_of("s1")
        assert owner is not None
        await side_sql(postgres_dsn, *NOTE_TRIGGER)
        async with notes_of(postgres_dsn) as notes:
            await terminate(postgres_dsn, owner["pid"])  # a's writer connection, a's process alive
            with anyio.fail_after(OWNER_WAIT_SECONDS * 4):
                assert await notes.receive() == "http://a"  # a connected again, by itself
        assert not await b.claim("s1")  # a holds it again, though it wrote nothing since
        await a.append(log("s1", 4, 4))
        assert await b.read("s1") == log("s1", 1, 4)


async def test_a_daemon_that_owns_the_database_alone_keeps_out_daemons_that_would_share_it(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn):
        with anyio.fail_after(OWNER_WAIT_SECONDS * 3), pytest.raises(StoreLocked, match="another acpd"):
            await PostgresEventStore.open(postgres_dsn, shared=True)


async def test_only_a_store_that_shares_its_database_claims_sessions(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as alone:
        with pytest.raises(StoreError, match="shared=True"):
            await alone.claim("s1")


async def terminate(dsn: str, pid: Any) -> None:
    """End a backend and wait until it has (its locks go with it)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await conn.close()
