"""The session log: grouped commits, a session document that never runs ahead of its events, and
what a failing store (a full disk) does to writers, readers and the daemon's log."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import pytest

from acpd.daemon import log as log_module
from acpd.daemon.log import SessionLog
from acpd.errors import StoreError, StoreFull
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.memory import MemoryEventStore
from tests.daemon.helpers import FullDisk

pytestmark = pytest.mark.anyio

DOC: SessionDoc = {"id": "s", "agent": "mock", "cwd": "/", "project": None, "createdAt": "2026-01-01T00:00:00.000Z"}


class RecordingStore(MemoryEventStore):
    """Remembers, per transaction, the last seq committed and the status of the document saved with it."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[tuple[int | None, str | None]] = []

    async def append(self, records: Sequence[EventRecord], *, session: SessionDoc | None = None) -> None:
        await super().append(records, session=session)
        self.commits.append((records[-1].seq if records else None, session["status"] if session else None))


async def test_a_saved_document_commits_with_the_record_appended_before_it() -> None:
    store = RecordingStore()
    log = SessionLog(store, "s", 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        for n in range(1, 10_001):
            log.append("agent", 1, {"n": n})
        with anyio.fail_after(5):
            await log.wait_saved(log.save_doc({**DOC, "status": "idle"}))
        log.close()
    # 10,000 records take several batches; the document goes with the one that holds record 10,000.
    assert len(store.commits) > 1
    assert all(status is None for _, status in store.commits[:-1])
    assert store.commits[-1] == (10_000, "idle")
    saved = await store.get_session("s")
    assert saved is not None
    assert saved["status"] == "idle"


async def test_a_document_saved_with_nothing_pending_commits_alone() -> None:
    store = RecordingStore()
    log = SessionLog(store, "s", 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        with anyio.fail_after(5):
            await log.wait_saved(log.save_doc({**DOC, "status": "running"}))
        log.close()
    assert store.commits == [(None, "running")]


async def test_a_closed_log_drops_late_appends_and_saves() -> None:
    store = RecordingStore()
    log = SessionLog(store, "s", 0)
    log.close()
    log.append("agent", 1, {"late": True})
    assert log.save_doc({**DOC, "status": "idle"}) == 0
    with anyio.fail_after(5):
        await log.run_flusher()
    assert store.commits == []


@pytest.fixture(autouse=True)
def fresh_failure_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report is the process's; each test starts with a quiet one."""
    monkeypatch.setattr(log_module, "_failures", log_module._FailureReport())


async def follow_to(log: SessionLog, seq: int) -> list[int]:
    seen: list[int] = []
    async for batch in log.follow(0):
        seen.extend(r.seq for r in batch)
        if seen[-1] >= seq:
            return seen
    return seen


async def test_a_full_disk_fails_durable_writers_at_once_and_everything_commits_in_order_when_space_returns() -> None:
    store = FullDisk()
    store.full = True
    log = SessionLog(store, "s", 0, retry_seconds=0)
    faults: list[StoreError] = []
    log.on_fault = faults.append
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        for n in range(1, 4):
            log.append("agent", 1, {"n": n})
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await log.wait_committed(3)
        with pytest.raises(StoreFull):
            await log.wait_saved(log.save_doc({**DOC, "status": "idle"}))
        for n in range(4, 6):
            log.append("agent", 1, {"n": n})
        await store.wait_failures(10)

        store.full = False
        with anyio.fail_after(5):
            assert await follow_to(log, 5) == [1, 2, 3, 4, 5]
            await log.wait_saved(log.save_doc({**DOC, "status": "idle"}))
        log.close()
    assert [type(f) for f in faults] == [StoreFull]  # once per run of failures
    assert log.fault is None
    assert [r.seq for r in await store.read("s")] == [1, 2, 3, 4, 5]
    assert (await store.get_session("s") or {}).get("status") == "idle"


async def test_readers_wait_out_a_full_disk_and_miss_nothing() -> None:
    store = FullDisk()
    log = SessionLog(store, "s", 0, retry_seconds=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        log.append("agent", 1, {"n": 1})
        with anyio.fail_after(5):
            await log.wait_committed(1)
        store.full = True
        log.append("agent", 1, {"n": 2})
        await store.wait_failures(1)
        assert await log.settled_end() == 1  # a new reader starts from what is committed
        store.full = False
        with anyio.fail_after(5):
            assert await follow_to(log, 2) == [1, 2]
        log.close()


async def test_a_follower_gets_what_was_appended_before_the_close_once_it_commits() -> None:
    store = FullDisk()
    log = SessionLog(store, "s", 0, retry_seconds=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        store.full = True
        log.append("agent", 1, {"n": 1})
        await store.wait_failures(1)
        got: list[int] = []

        async def follow() -> None:
            async for batch in log.follow(0):
                got.extend(r.seq for r in batch)

        tg.start_soon(follow)
        log.close()  # the record is not committed yet: the follower must not end without it
        store.full = False
        with anyio.fail_after(5):
            await log.finished.wait()
    assert got == [1]


async def test_failed_commits_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    store = FullDisk()
    store.full = True
    log = SessionLog(store, "s", 0, retry_seconds=0)
    with caplog.at_level(logging.WARNING, logger="acpd.daemon.log"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.run_flusher)
            log.append("agent", 1, {"n": 1})
            with anyio.fail_after(5):
                await store.wait_failures(200)
                store.full = False
                await follow_to(log, 1)
            log.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("1 commit(s) of 1 session log(s) failed")
    assert "database or disk is full" in lines[0]
    assert caplog.records[0].exc_info is None  # a full disk is no bug: no traceback
    assert lines[1].startswith("the event store accepts commits again;")
    assert int(lines[1].split("; ")[1].split()[0]) >= 199


async def test_a_log_closed_while_the_disk_is_full_gives_up_after_one_last_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FullDisk()
    store.full = True
    log = SessionLog(store, "s", 0, retry_seconds=3600)
    with caplog.at_level(logging.ERROR, logger="acpd.daemon.log"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.run_flusher)
            log.append("agent", 1, {"n": 1})
            log.append("agent", 1, {"n": 2})
            await store.wait_failures(1)
            log.close()
            with anyio.fail_after(5):
                await log.finished.wait()
    assert store.failures == 2
    assert "session s: 2 event(s) after seq 0 could not be committed before stopping" in caplog.text
