"""PostgresEventStore beyond the shared contract: opening (an unreachable database, a newer schema,
a second owner, two daemons migrating at once), a connection lost mid-write, and what a restart finds."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import anyio
import pytest

from acpd.errors import StoreError, StoreLocked
from acpd.protocol.events import EventRecord
from acpd.store._pg_schema import CONNECT_TIMEOUT_SECONDS, OWNER_WAIT_SECONDS, SCHEMA_VERSION
from acpd.store.base import AuditFilter
from acpd.store.postgres import RETRY_DELAYS, PostgresEventStore
from acpd.store.select import is_postgres, shown
from acpd.testing.postgres import Cluster
from tests.postgres import CUT_NEXT_INSERT, fresh_schema, postgres_dsn, side_sql
from tests.store.helpers import doc, log, record
from tests.store.test_audit import frame, turn_records

pytestmark = pytest.mark.anyio
__all__ = ["postgres_dsn"]


async def side_connection(dsn: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn)


async def test_an_unreachable_database_is_a_clear_error_without_the_password(postgres_cluster: Cluster) -> None:
    closed_port = postgres_cluster.port + 1 if postgres_cluster.port < 65535 else 1
    dsn = f"postgresql://acpd:hunter2@127.0.0.1:{closed_port}/acpd"
    with anyio.fail_after(CONNECT_TIMEOUT_SECONDS * 3), pytest.raises(StoreError) as refused:
        await PostgresEventStore.open(dsn)
    message = str(refused.value)
    assert message.startswith(f"cannot reach the PostgreSQL event store postgresql://acpd:***@127.0.0.1:{closed_port}")
    assert "hunter2" not in message
    assert refused.value.data == {"db": f"postgresql://acpd:***@127.0.0.1:{closed_port}/acpd"}


async def test_an_unknown_database_is_named_in_the_error(postgres_cluster: Cluster) -> None:
    with pytest.raises(StoreError, match='database "nowhere" does not exist'):
        await PostgresEventStore.open(postgres_cluster.dsn.rsplit("/", 1)[0] + "/nowhere")


async def test_a_schema_from_a_newer_acpd_is_refused_with_what_to_do(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        await store.append(log("s1", 1, 3), session=doc("s1"))
    conn = await side_connection(postgres_dsn)
    try:
        await conn.execute("UPDATE acpd_schema SET version = $1", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    with pytest.raises(StoreError, match=r"newer than the \d+ this acpd knows: upgrade acpd") as refused:
        await PostgresEventStore.open(postgres_dsn)
    assert refused.value.data == {"schemaVersion": SCHEMA_VERSION + 1, "supported": SCHEMA_VERSION}


async def test_a_second_store_on_one_database_is_refused_and_takes_it_once_the_first_closes(
    postgres_dsn: str,
) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as first:
        await first.append(log("s1", 1, 2), session=doc("s1"))
        with anyio.fail_after(OWNER_WAIT_SECONDS * 3), pytest.raises(StoreLocked) as refused:
            await PostgresEventStore.open(postgres_dsn)
        assert "another acpd (database backend pid" in str(refused.value)
        assert refused.value.data["pid"] > 0
    async with await PostgresEventStore.open(postgres_dsn) as second:
        assert await second.read("s1") == log("s1", 1, 2)


async def test_stores_on_two_schemas_of_one_database_are_owned_apart(postgres_cluster: Cluster) -> None:
    async with (
        fresh_schema(postgres_cluster) as one,
        fresh_schema(postgres_cluster) as other,
        await PostgresEventStore.open(one) as first,
        await PostgresEventStore.open(other) as second,
    ):
        await first.append(log("s1", 1, 2))
        assert await second.read("s1") == []


async def test_two_daemons_starting_on_one_new_database_migrate_it_once(postgres_dsn: str) -> None:
    outcomes: list[PostgresEventStore | StoreLocked] = []

    async def open_one() -> None:
        try:
            outcomes.append(await PostgresEventStore.open(postgres_dsn))
        except StoreLocked as exc:
            outcomes.append(exc)

    with anyio.fail_after(OWNER_WAIT_SECONDS * 3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(open_one)
            tg.start_soon(open_one)
    opened = [o for o in outcomes if isinstance(o, PostgresEventStore)]
    assert len(opened) == 1 and len(outcomes) == 2
    await opened[0].aclose()
    conn = await side_connection(postgres_dsn)
    try:
        assert await conn.fetch("SELECT version FROM acpd_schema") == [(SCHEMA_VERSION,)]
    finally:
        await conn.close()


async def test_after_the_server_dropped_its_connections_a_batch_commits_on_a_new_one_without_an_error(
    postgres_dsn: str,
) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        await store.append(log("s1", 1, 3), session=doc("s1"))
        assert await cut_connections(postgres_dsn, "acpd") >= 2  # the writer's and a reader's

        with anyio.fail_after(10):
            await store.append(log("s1", 4, 6))  # its lost connection is tried again, within the call

        assert await store.read("s1") == log("s1", 1, 6)
        async with await PostgresEventStore.open(postgres_dsn, writer=False) as reader:
            assert await reader.read("s1") == log("s1", 1, 6)


async def test_a_writer_that_lost_its_connection_while_another_daemon_took_the_database_is_refused(
    postgres_dsn: str,
) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as first:
        await first.append(log("s1", 1, 3), session=doc("s1"))
        assert await cut_connections(postgres_dsn, "acpd") >= 1
        async with await PostgresEventStore.open(postgres_dsn) as second:
            with anyio.fail_after(OWNER_WAIT_SECONDS * 4), pytest.raises(StoreLocked):
                await append_within(2, first, log("s1", 4, 6))
            await second.append(log("s1", 4, 5))  # the new owner writes on from what is stored
            assert await second.read("s1") == log("s1", 1, 5)


async def append_within(tries: int, store: PostgresEventStore, records: list[EventRecord]) -> list[StoreError]:
    """Append ``records``, trying again after a ``StoreError`` (not ``StoreLocked``) up to
    ``tries`` times in all; the errors before it committed."""
    failures: list[StoreError] = []
    for _ in range(tries - 1):
        try:
            await store.append(records)
            return failures
        except StoreLocked:
            raise
        except StoreError as exc:
            failures.append(exc)
    await store.append(records)
    return failures


async def cut_connections(dsn: str, application: str) -> int:
    """Terminate the connections of ``application``, as a restart of the server would; how many."""
    conn = await side_connection(dsn)
    try:
        cut: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND pid <> pg_backend_pid()",
            application,
        )
        return cut
    finally:
        await conn.close()


async def test_a_connection_lost_mid_write_fails_the_batch_and_the_same_batch_commits_once_it_is_back(
    postgres_dsn: str,
) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        await store.append(log("s1", 1, 3), session=doc("s1"))
        await side_sql(postgres_dsn, *CUT_NEXT_INSERT)

        with pytest.raises(StoreError, match="event store database error"):
            await store.append(log("s1", 4, 6))
        assert await store.read("s1") == log("s1", 1, 3)
        await side_sql(postgres_dsn, "DROP TRIGGER cut ON events")
        await store.append(log("s1", 4, 6))

        assert await store.read("s1") == log("s1", 1, 6)


async def test_a_connection_lost_at_every_try_fails_the_batch_after_the_bounded_tries(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        await store.append(log("s1", 1, 3), session=doc("s1"))
        # each cut also counts itself: a sequence's nextval survives the transaction the cut aborts
        await side_sql(postgres_dsn, "CREATE SEQUENCE cuts", *CUT_NEXT_INSERT)
        await side_sql(
            postgres_dsn,
            "CREATE OR REPLACE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM nextval('cuts'); PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$",
        )

        started = anyio.current_time()
        with anyio.fail_after(30), pytest.raises(StoreError, match="event store database error"):
            await store.append(log("s1", 4, 6))
        waited = anyio.current_time() - started

        conn = await side_connection(postgres_dsn)
        try:
            assert await conn.fetchval("SELECT last_value FROM cuts") == len(RETRY_DELAYS) + 1
            await conn.execute("DROP TRIGGER cut ON events")
        finally:
            await conn.close()
        assert sum(RETRY_DELAYS) <= waited < sum(RETRY_DELAYS) + 10
        await store.append(log("s1", 4, 6))  # the database is back: the same batch commits
        assert await store.read("s1") == log("s1", 1, 6)


async def test_a_retried_batch_whose_lost_commit_had_landed_is_not_written_twice(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        await store.append(log("s1", 1, 3), session=doc("s1"))
        await side_sql(postgres_dsn, *CUT_NEXT_INSERT)
        with pytest.raises(StoreError):
            await store.append(log("s1", 4, 6))
        conn = await side_connection(postgres_dsn)
        try:  # as if the failed commit had reached the database before its answer was lost
            await conn.execute("DROP TRIGGER cut ON events")
            await conn.executemany("INSERT INTO events VALUES ($1, $2, $3, $4, $5, $6)", log("s1", 4, 5))
        finally:
            await conn.close()

        await store.append(log("s1", 4, 6))

        assert await store.read("s1") == log("s1", 1, 6)
        with pytest.raises(StoreError, match="does not continue"):  # outside a retry, a taken seq is refused
            await store.append(log("s1", 6, 6))


async def test_text_postgresql_cannot_hold_fails_its_batch_whole_and_the_store_goes_on(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        with pytest.raises(StoreError, match="event store database error"):
            await store.append([*log("s1", 1, 2), record("s1", 3, '{"nul":"\x00"}')], session=doc("s1"))
        assert await store.read("s1") == []
        await store.append(log("s1", 1, 3), session=doc("s1"))
        assert await store.read("s1") == log("s1", 1, 3)


async def test_a_turn_a_restart_interrupted_is_indexed_from_its_records(postgres_dsn: str) -> None:
    begun = turn_records("s", 1, 1, cost=0.5, tokens=10, second=0)[:3]  # its answer never came
    async with await PostgresEventStore.open(postgres_dsn) as before:
        await before.append(begun, session=doc("s"))
        assert await before.turns("s") == []
    note = {"method": "_acpd/turn_interrupted", "params": {"sessionId": "s", "turn": 1, "reason": "daemon restarted"}}
    async with await PostgresEventStore.open(postgres_dsn) as after:
        await after.append([frame("s", 4, "daemon", note, 9)])
        (turn,) = await after.turns("s")
        assert (turn["firstSeq"], turn["lastSeq"], turn["steps"]) == (1, 4, 1)
        assert turn["error"] == "interrupted: the daemon restarted"
        assert [s["id"] for s in (await after.search_sessions("thing")).items] == ["s"]
        assert len((await after.tool_calls(AuditFilter(session="s"))).items) == 1


async def test_search_splits_words_at_punctuation_as_sqlite_does(postgres_dsn: str) -> None:
    async with await PostgresEventStore.open(postgres_dsn) as store:
        await store.append([], session=doc("s", title="Fix parser.py: the ETA-bug"))
        assert [s["id"] for s in (await store.search_sessions("py eta")).items] == ["s"]
        (found,) = (await store.search_sessions("parser")).items
        assert found["match"] == {"kind": "title", "snippet": "Fix [parser].py: the ETA-bug"}


def test_a_database_url_is_shown_without_its_password() -> None:
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://h/db")
    assert not is_postgres("/var/lib/acpd/acpd.db") and not is_postgres("memory")
    assert shown("postgresql://u:secret@db.internal:5433/acpd?sslmode=require") == (
        "postgresql://u:***@db.internal:5433/acpd?sslmode=require"
    )
    assert shown("postgresql://u@[::1]/acpd") == "postgresql://u@[::1]/acpd"
    assert shown("/srv/acpd.db") == "/srv/acpd.db"


def test_the_daemon_on_sqlite_does_not_load_the_postgresql_driver() -> None:
    code = (
        "import sys, acpd.cli, acpd.daemon.serve, acpd.store.postgres;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncpg')))"
    )
    done = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
