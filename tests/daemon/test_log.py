"""The session log: grouped commits, and a session document that never runs ahead of its events."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from acpd.daemon.log import SessionLog
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.memory import MemoryEventStore

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
