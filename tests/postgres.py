"""Test helper: the PostgreSQL server the tests share (started once per test session, when a test
first asks for it, and stopped by its PID at the end) and a fresh schema of it per test.

Where the server cannot start, a test that needs it fails when ``ACPD_REQUIRE_POSTGRES`` is set
(as .ci/run sets it), and is skipped with the reason otherwise.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from acpd.testing import postgres

REQUIRE_ENV: Final = "ACPD_REQUIRE_POSTGRES"
_schemas = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    try:
        cluster = postgres.start()
    except postgres.PostgresUnavailable as exc:
        message = f"PostgreSQL is not available: {exc}"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        postgres.stop(cluster)


@pytest.fixture
async def postgres_dsn(postgres_cluster: postgres.Cluster, anyio_backend: str) -> AsyncIterator[str]:
    """The URL of a schema of the test's own (``fresh_schema``)."""
    async with fresh_schema(postgres_cluster) as dsn:
        yield dsn


@asynccontextmanager
async def fresh_schema(cluster: postgres.Cluster) -> AsyncIterator[str]:
    """The URL of a new schema, dropped afterwards: stores opened on it see only their own tables."""
    import asyncpg

    schema = f"test_{os.getpid()}_{next(_schemas)}"
    conn = await asyncpg.connect(cluster.dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield cluster.dsn_in(schema)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


CUT_NEXT_INSERT: Final = (
    "CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$",
    "CREATE TRIGGER cut BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION cut()",
)
"""A trigger that cuts every connection that inserts events, in the middle of its transaction:
the database lost to the writer (``DROP TRIGGER cut ON events`` brings it back)."""


CUT_ONE_INSERT: Final = (
    "CREATE SEQUENCE cuts",
    "CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF nextval('cuts') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END $$",
    "CREATE TRIGGER cut BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION cut()",
)
"""A trigger that cuts the next connection that inserts events, once (a sequence's ``nextval``
outlives the transaction the cut aborts): the database lost to the writer for a moment."""


async def side_sql(dsn: str, *statements: str) -> None:
    """Run ``statements`` on a connection of the test's own."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def port_of(dsn: str) -> int:
    port = urlsplit(dsn).port
    assert port is not None
    return port


def through(dsn: str, port: int) -> str:
    """``dsn`` with its host and port those of a proxy on 127.0.0.1 (``acpd.testing.tcp_proxy``)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


async def wait_free(dsn: str, session_id: str) -> None:
    """Until no daemon holds the session (its lock taken and given back at once)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtext(current_schema()), lock_id) FROM session_locks WHERE session_id = $1",
            session_id,
        )
        await conn.execute("SELECT pg_advisory_unlock_all()")
    finally:
        await conn.close()


NOTE_TRIGGER: Final = (
    "CREATE FUNCTION noted() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN PERFORM pg_notify('test_noted', NEW.url); RETURN NEW; END $$",
    "CREATE TRIGGER noted AFTER INSERT OR UPDATE ON daemons FOR EACH ROW EXECUTE FUNCTION noted()",
)
"""A trigger that tells ``notes_of`` each address a daemon notes: a daemon notes its own on every
new writer connection, once it holds its sessions again (run it once the schema is migrated)."""


@asynccontextmanager
async def notes_of(dsn: str) -> AsyncIterator[MemoryObjectReceiveStream[str]]:
    """The addresses daemons note from now on, as they note them (``NOTE_TRIGGER``)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    noted, notes = anyio.create_memory_object_stream[str](10)
    try:
        with noted, notes:
            await conn.add_listener("test_noted", lambda _conn, _pid, _channel, url: noted.send_nowait(url))
            yield notes
    finally:
        await conn.close()
