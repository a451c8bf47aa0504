"""SqliteEventStore beyond the shared contract: durability across reopen, migrations, WAL, concurrent reads."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import cast

import anyio
import pytest

from acpd.errors import StoreError
from acpd.protocol.events import EventRecord
from acpd.store import SqliteEventStore
from acpd.store import sqlite as sqlite_store
from tests.store.helpers import CREATED_AT, doc, log, record

pytestmark = pytest.mark.anyio

BIG_BATCH_RECORDS = 100_000


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to inspect the file as another process would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def pragma(path: Path, name: str) -> object:
    with raw(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


async def test_data_survives_closing_and_reopening_the_database(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.save_session(doc("s1", title="kept"))
        await store.append(log("s1", 1, 5))
        await store.put_idempotent("s1", "key", "answer")

    async with await SqliteEventStore.open(str(path)) as store:
        assert await store.get_session("s1") == doc("s1", title="kept")
        assert await store.read("s1") == log("s1", 1, 5)
        assert await store.last_seq("s1") == 5
        assert await store.get_idempotent("s1", "key") == "answer"
        assert [item["id"] for item in (await store.list_sessions()).items] == ["s1"]


async def test_a_reopened_store_continues_each_log_from_its_last_committed_seq(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(log("s1", 1, 3))

    async with await SqliteEventStore.open(path) as store:
        with pytest.raises(StoreError):
            await store.append([record("s1", 1)])
        await store.append([record("s1", 4)])

        assert await store.read("s1") == log("s1", 1, 4)


async def test_opening_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "acpd.db"

    async with await SqliteEventStore.open(path):
        pass

    assert path.is_file()


async def test_migrations_set_user_version_to_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"

    async with await SqliteEventStore.open(path):
        pass
    async with await SqliteEventStore.open(path):
        pass

    assert pragma(path, "user_version") == sqlite_store.SCHEMA_VERSION == len(sqlite_store.MIGRATIONS)
    with raw(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"sessions", "events", "idempotency"} <= tables


async def test_a_database_from_a_newer_acpd_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    future = sqlite_store.SCHEMA_VERSION + 1
    with raw(path) as conn:
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute(f"PRAGMA user_version = {future}")

    with pytest.raises(StoreError, match="newer") as caught:
        await SqliteEventStore.open(path)

    assert caught.value.data == {"schemaVersion": future, "supported": sqlite_store.SCHEMA_VERSION}
    assert pragma(path, "user_version") == future
    with raw(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_schema WHERE name = 'events'").fetchall() == []


async def test_a_failing_migration_leaves_the_database_at_its_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(log("s1", 1, 2))
    broken = (*sqlite_store.MIGRATIONS, ("CREATE TABLE half_done (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", broken)
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", len(broken))

    with pytest.raises(StoreError, match="cannot open"):
        await SqliteEventStore.open(path)

    assert pragma(path, "user_version") == len(broken) - 1
    with raw(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_schema WHERE name = 'half_done'").fetchall() == []
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 2


async def test_file_databases_use_the_wal_journal(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"

    async with await SqliteEventStore.open(path):
        pass

    # WAL is a property of the file, so a fresh connection sees it too.
    assert pragma(path, "journal_mode") == "wal"


async def wal_growth(path: Path, monkeypatch: pytest.MonkeyPatch, *, idle_checkpoint: bool) -> tuple[int, int]:
    """The database file's size before and after committing some 1,500 pages of records; with
    ``idle_checkpoint``, after the checkpoint the writer's next idle moment hands the reader."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_SECONDS", 3600.0)
    checkpointed = threading.Event()
    run = sqlite_store._Checkpoints.run

    def noted(conn: sqlite3.Connection) -> int:
        frames = run(conn)
        checkpointed.set()
        return frames

    monkeypatch.setattr(sqlite_store._Checkpoints, "run", staticmethod(noted))
    async with await SqliteEventStore.open(path) as store:
        await store.save_session(doc("s"))
        before = (await anyio.Path(path).stat()).st_size
        pad = "x" * 1000
        for first in range(1, 6001, 1000):
            await store.append([record("s", seq, f'{{"pad":"{pad}"}}') for seq in range(first, first + 1000)])
        if idle_checkpoint:
            monkeypatch.setattr(sqlite_store, "CHECKPOINT_SECONDS", 0.0)
            checkpointed.clear()
            await store.save_session(doc("s", title="after the appends"))
            assert await anyio.to_thread.run_sync(checkpointed.wait, 10)
        return before, (await anyio.Path(path).stat()).st_size


async def test_commits_leave_checkpoints_to_the_writers_idle_moments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's automatic checkpoint would copy the WAL into the database inside a commit (every
    # 1,000 pages, with two fsyncs): on the clock of whichever prompt filled it
    before, after = await wal_growth(tmp_path / "acpd.db", monkeypatch, idle_checkpoint=False)
    assert after == before


async def test_an_idle_writer_has_the_wal_copied_into_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = await wal_growth(tmp_path / "acpd.db", monkeypatch, idle_checkpoint=True)
    assert after > before + 5_000_000


class Submitted:
    """A reader's worker that only keeps what it is handed."""

    def __init__(self) -> None:
        self.calls: list[Callable[[sqlite3.Connection], None]] = []

    def submit(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        self.calls.append(fn)


class WalOf:
    """A connection whose checkpoint finds a WAL of ``frames`` frames, and copies none of them
    (the frames in the WAL, not those copied, tell whether it is long)."""

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def execute(self, sql: str) -> WalOf:
        assert sql == "PRAGMA wal_checkpoint(PASSIVE)"
        return self

    def fetchone(self) -> tuple[int, int, int]:
        return (0, self.frames, 0)


def test_a_long_wal_is_checkpointed_again_soon_until_it_starts_over() -> None:
    # SQLite starts the WAL over only at a write that finds all of it copied: after a long turn,
    # the checkpoint ended with newer frames uncopied, the WAL grew on until SQLite's own
    # checkpoint copied the rest inside some prompt's commit, 20 to 60 ms more for it
    reader = Submitted()
    checkpoints = sqlite_store._Checkpoints(cast(sqlite_store._Worker, reader))

    def later(seconds: float) -> int:
        checkpoints._last -= seconds
        checkpoints.when_due()
        return len(reader.calls)

    assert later(sqlite_store.CHECKPOINT_SECONDS) == 1
    assert later(sqlite_store.CHECKPOINT_SECONDS) == 1  # none more while one is handed over
    reader.calls[-1](cast(sqlite3.Connection, WalOf(3)))

    assert later(sqlite_store.CHECKPOINT_SECONDS) == 2
    reader.calls[-1](cast(sqlite3.Connection, WalOf(sqlite_store.CHASE_FRAMES)))
    assert later(sqlite_store.CHASE_SECONDS) == 3  # a long WAL: again soon
    reader.calls[-1](cast(sqlite3.Connection, WalOf(3)))
    assert later(sqlite_store.CHASE_SECONDS) == 3  # it started over: not before a second
    assert later(sqlite_store.CHECKPOINT_SECONDS) == 4


async def test_a_checkpoint_in_progress_holds_up_no_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a checkpoint copies pages and syncs the file: a commit that waited for it waited milliseconds
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_SECONDS", 0.0)
    started, release = threading.Event(), threading.Event()
    run = sqlite_store._Checkpoints.run

    def slow(conn: sqlite3.Connection) -> int:
        started.set()
        release.wait(10)
        return run(conn)

    monkeypatch.setattr(sqlite_store._Checkpoints, "run", staticmethod(slow))
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        await store.save_session(doc("s"))
        assert await anyio.to_thread.run_sync(started.wait, 10)
        try:
            with anyio.fail_after(5):  # (the reader's thread is in the checkpoint meanwhile)
                await store.append(log("s", 1, 3))
        finally:
            release.set()
        assert [r.seq for r in await store.read("s")] == [1, 2, 3]


async def test_opening_a_directory_as_the_database_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteEventStore.open(tmp_path)


async def test_memory_databases_are_private_to_each_store() -> None:
    async with await SqliteEventStore.open(":memory:") as first, await SqliteEventStore.open(":memory:") as second:
        await first.append(log("s1", 1, 2))

        assert await second.last_seq("s1") == 0


def big_batch(session_id: str, first: int) -> list[EventRecord]:
    return [record(session_id, seq) for seq in range(first, first + BIG_BATCH_RECORDS)]


async def test_reads_proceed_while_a_big_append_waits_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.save_session(doc("s1"))
        await store.append(log("s1", 1, 3))
        appended = anyio.Event()

        async def append_big() -> None:
            await store.append(big_batch("s1", 4))
            appended.set()

        with raw(path) as blocker, anyio.fail_after(5):
            # Another writer holds the lock, so the store's append stays in flight until released.
            blocker.execute("BEGIN IMMEDIATE")
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(append_big)
                    await anyio.wait_all_tasks_blocked()

                    assert await store.read("s1") == log("s1", 1, 3)
                    assert await store.last_seq("s1") == 3
                    assert await store.get_session("s1") == doc("s1")
                    assert [item["id"] for item in (await store.list_sessions()).items] == ["s1"]
                    assert not appended.is_set()
                    blocker.execute("ROLLBACK")
            finally:
                if blocker.in_transaction:
                    blocker.execute("ROLLBACK")

        assert await store.last_seq("s1") == 3 + BIG_BATCH_RECORDS


async def test_concurrent_readers_see_a_batch_entirely_or_not_at_all(tmp_path: Path) -> None:
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        await store.append(log("s1", 1, 3))
        appended = anyio.Event()
        seen: set[int] = set()

        async def append_big() -> None:
            await store.append(big_batch("s1", 4))
            appended.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(append_big)
                while not appended.is_set():
                    seen.add(await store.last_seq("s1"))
                    seen.add(len(await store.read("s1", limit=BIG_BATCH_RECORDS + 10)))
        seen.add(await store.last_seq("s1"))

        assert seen <= {3, 3 + BIG_BATCH_RECORDS}
        assert 3 + BIG_BATCH_RECORDS in seen


async def test_a_row_written_behind_the_stores_back_fails_the_batch_as_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.append(log("s1", 1, 3))
        with raw(path) as intruder:
            row = ("s1", 4, "2026-01-02T03:04:05.678Z", "agent", 1, '{"from":"elsewhere"}')
            intruder.execute(
                "INSERT INTO events (session_id, seq, at, sender, turn, payload) VALUES (?,?,?,?,?,?)", row
            )

        with pytest.raises(StoreError, match="database error"):
            await store.append([record("s2", 1), record("s1", 4)])

        assert await store.last_seq("s2") == 0
        assert [event.payload for event in await store.read("s1", after=3)] == ['{"from":"elsewhere"}']


async def test_a_document_saved_again_is_listed_by_its_keys_as_they_are_now(tmp_path: Path) -> None:
    # a save whose indexed keys did not change writes only the document's text: the listings must
    # still follow every change of a key, and the indexes stay whole
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as store:
        await store.save_session(doc("s1", project="alpha", title="one"))
        await store.append([record("s1", 1)], session=doc("s1", project="alpha", title="two"))
        assert await store.get_session("s1") == doc("s1", project="alpha", title="two")
        assert [item["id"] for item in (await store.list_sessions(project="alpha")).items] == ["s1"]

        await store.append([record("s1", 2)], session=doc("s1", project="beta", title="two"))
        await store.save_session(doc("s1", project="beta", title="three", archivedAt=CREATED_AT))
        assert (await store.list_sessions(project="alpha")).items == []
        assert [item["title"] for item in (await store.list_sessions(project="beta", archived=True)).items] == ["three"]

        with raw(path) as intruder:  # the row goes behind the store's back: a save brings it back
            intruder.execute("DELETE FROM sessions WHERE id = 's1'")
        await store.save_session(doc("s1", project="beta", title="four", archivedAt=CREATED_AT))
        assert await store.get_session("s1") == doc("s1", project="beta", title="four", archivedAt=CREATED_AT)
    assert pragma(path, "integrity_check") == "ok"


async def test_a_database_path_under_a_regular_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")

    with pytest.raises(StoreError, match="cannot create the directory"):
        await SqliteEventStore.open(tmp_path / "file" / "acpd.db")


def file_modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


@pytest.mark.usefixtures("open_umask")
async def test_the_database_and_its_wal_and_shm_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "acpd.db"
    store = await SqliteEventStore.open(path)
    try:
        await store.append([record("s1", 1)], session=doc("s1"))
        modes = file_modes(path.parent)
    finally:
        await store.aclose()
    assert modes == {"acpd.db": 0o600, "acpd.db-wal": 0o600, "acpd.db-shm": 0o600, "acpd.db.lock": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.usefixtures("open_umask")
async def test_database_files_an_older_version_left_readable_become_private(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    for name in ("acpd.db", "acpd.db-wal"):
        (tmp_path / name).touch(mode=0o644)
    store = await SqliteEventStore.open(path)
    try:
        modes = file_modes(tmp_path)
    finally:
        await store.aclose()
    assert modes["acpd.db"] == modes["acpd.db-wal"] == 0o600
