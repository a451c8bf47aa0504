"""SqliteEventStore under faults: a full disk, a second owner, a call stuck in the disk."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import anyio
import pytest

from acpd.errors import StoreFull, StoreLocked
from acpd.store import SqliteEventStore
from acpd.store import sqlite as sqlite_store
from tests.store.helpers import doc, fill_up, log, make_room

pytestmark = pytest.mark.anyio


async def test_a_full_disk_fails_a_batch_whole_and_the_same_batch_commits_once_space_returns(tmp_path: Path) -> None:
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        await store.append(log("s1", 1, 10), session=doc("s1"))
        await fill_up(store)

        with pytest.raises(StoreFull, match="database or disk is full"):
            await store.append(log("s1", 11, 3000), session=doc("s1", title="later"))
        assert await store.last_seq("s1") == 10
        assert await store.get_session("s1") == doc("s1")

        await make_room(store)
        await store.append(log("s1", 11, 3000), session=doc("s1", title="later"))
        assert await store.read("s1", limit=5000) == log("s1", 1, 3000)
        assert await store.get_session("s1") == doc("s1", title="later")


async def test_a_second_store_on_one_file_is_refused_naming_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    async with await SqliteEventStore.open(path) as first:
        await first.note_owner({"url": "http://127.0.0.1:4520"})
        with pytest.raises(StoreLocked) as refused:
            await SqliteEventStore.open(path)
        assert str(refused.value) == (
            f"another acpd (pid {os.getpid()}, serving http://127.0.0.1:4520) owns {path}; stop it or use --db"
        )
        assert refused.value.data == {"db": str(path), "pid": os.getpid(), "url": "http://127.0.0.1:4520"}
    async with await SqliteEventStore.open(path):
        pass  # released on close


async def test_a_store_opened_before_the_loop_ran_serves_and_refuses_a_second_owner_when_awaited(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "acpd.db"
    opening = SqliteEventStore.begin_open(path)  # as a daemon begins it, before its imports
    async with await opening.store() as store:
        await store.append(log("s1", 1, 3), session=doc("s1"))
        assert await store.read("s1") == log("s1", 1, 3)
        second = SqliteEventStore.begin_open(path)
        with pytest.raises(StoreLocked):
            await second.store()


async def test_the_lock_file_only_its_owner_can_read(tmp_path: Path) -> None:
    path = tmp_path / "acpd.db"
    lock = anyio.Path(f"{path}.lock")
    await lock.touch()
    await lock.chmod(0o644)  # left by an older acpd
    async with await SqliteEventStore.open(path):
        assert stat.S_IMODE((await lock.stat()).st_mode) == 0o600


async def test_memory_databases_take_no_lock() -> None:
    async with await SqliteEventStore.open(":memory:"), await SqliteEventStore.open(":memory:"):
        pass


async def test_closing_does_not_wait_forever_for_a_call_stuck_in_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "CLOSE_TIMEOUT_SECONDS", 0.2)
    path = tmp_path / "acpd.db"
    release = threading.Event()
    store = await SqliteEventStore.open(path)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._write, lambda conn: release.wait())
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(5):
                await store.aclose()
            tg.cancel_scope.cancel()  # the stuck call is left to its thread
        with pytest.raises(StoreLocked):
            await SqliteEventStore.open(path)  # a store that did not close keeps its lock
    finally:
        release.set()
