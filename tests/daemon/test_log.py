"""The session log: grouped commits, a session document that never runs ahead of its events, and
what a failing store (a full disk) does to writers, readers and the daemon's log."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from acpd.daemon import log as log_module
from acpd.daemon.log import GroupCommitter, SessionLog
from acpd.errors import StoreError, StoreFull
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc, encoded_doc
from acpd.store.memory import MemoryEventStore
from tests.daemon.helpers import FullDisk

pytestmark = pytest.mark.anyio

DOC: SessionDoc = {"id": "s", "agent": "mock", "cwd": "/", "project": None, "createdAt": "2026-01-01T00:00:00.000Z"}


class RecordingStore(MemoryEventStore):
    """Remembers, per transaction, the last seq committed and the status of the document saved with it."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[tuple[int | None, str | None]] = []

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        await super().append_many(records, sessions=sessions)
        self.commits.append((records[-1].seq if records else None, _status(sessions[-1]) if sessions else None))


def _status(doc: SessionDoc | EncodedDoc) -> str:
    """The status of a document as the store was given it (the log hands it encoded)."""
    return str(jsonio.loads(encoded_doc(doc).text)["status"])


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


class RoundStore(MemoryEventStore):
    """Remembers each transaction's sessions and record counts; refuses the records of the sessions
    in ``refused``; holds each transaction until ``gate`` is set, when one is given."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[dict[str, int]] = []
        self.refused: set[str] = set()
        self.gate: anyio.Event | None = None
        self.entered = anyio.Event()

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if any(r.session_id in self.refused for r in records):
            raise StoreFull("the event store is full (database or disk is full): free disk space")
        await super().append_many(records, sessions=sessions)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.session_id] = counts.get(record.session_id, 0) + 1
        self.rounds.append(counts)


def shared_logs(store: RoundStore, names: str, *, retry_seconds: float = 0) -> tuple[GroupCommitter, list[SessionLog]]:
    committer = GroupCommitter(store)
    return committer, [SessionLog(store, name, 0, committer=committer, retry_seconds=retry_seconds) for name in names]


async def close_all(committer: GroupCommitter, logs: list[SessionLog]) -> None:
    for log in logs:
        log.close()
    with anyio.fail_after(5):
        for log in logs:
            await log.finished.wait()
    committer.close()


async def test_one_transaction_commits_what_many_sessions_queued() -> None:
    store = RoundStore()
    committer, logs = shared_logs(store, "abcdefghij")
    async with anyio.create_task_group() as tg:
        for log in logs:
            log.append("client", 1, {"hello": log.session_id})
            log.save_doc({**DOC, "id": log.session_id, "status": "running"})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            for log in logs:
                await log.wait_saved(1)
        await close_all(committer, logs)
    assert store.rounds == [dict.fromkeys("abcdefghij", 1)]
    saved = [await store.get_session(name) for name in "abcdefghij"]
    assert all((doc or {}).get("status") == "running" for doc in saved)


async def test_what_is_due_at_the_same_moment_commits_in_one_transaction() -> None:
    # an agent's last update and the turn's answer arrive together, but the answer is appended
    # by another task a turn of the event loop later: they still share a transaction
    store = RoundStore()
    committer, (log,) = shared_logs(store, "s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        await anyio.wait_all_tasks_blocked()

        async def answer() -> None:
            log.append("agent", 1, {"result": "end_turn"})
            log.save_doc({**DOC, "status": "idle"})

        log.append("agent", 1, {"update": "chunk"})
        tg.start_soon(answer)
        with anyio.fail_after(5):
            await log.wait_saved(1)
        await close_all(committer, [log])
    assert store.rounds == [{"s": 2}]


async def test_a_held_turn_commits_its_prompt_and_its_answer_in_one_transaction() -> None:
    store = RoundStore()
    committer, (log,) = shared_logs(store, "s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        log.append("client", 1, {"method": "session/prompt"})
        log.save_doc({**DOC, "status": "running"})
        log.hold(60)  # the prompt is with the agent
        await anyio.wait_all_tasks_blocked()
        assert store.rounds == []
        log.append("agent", 1, {"update": "chunk"})
        log.append("agent", 1, {"result": "end_turn"})
        saved = log.save_doc({**DOC, "status": "idle"})
        with anyio.fail_after(5):
            await log.wait_saved(saved)  # a writer waiting for durability ends the hold
        await close_all(committer, [log])
    assert store.rounds == [{"s": 3}]
    assert (await store.get_session("s") or {}).get("status") == "idle"


async def test_a_hold_ends_by_itself_and_its_records_become_visible() -> None:
    store = RoundStore()
    committer, (log,) = shared_logs(store, "s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        log.append("client", 1, {"method": "session/prompt"})
        log.hold(0.01)  # an agent that takes its time to answer
        with anyio.fail_after(5):
            first = await anext(aiter(log.follow(0)))  # a reader does not end the hold; its time does
        assert [r.seq for r in first] == [1]
        await close_all(committer, [log])


async def test_a_burst_or_a_close_ends_a_hold_at_once() -> None:
    store = RoundStore()
    committer, (burst, closed) = shared_logs(store, "bc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        burst.hold(3600)
        closed.hold(3600)
        closed.append("client", 1, {"method": "session/prompt"})
        for n in range(log_module.HOLD_BURST_RECORDS):
            burst.append("agent", 1, {"n": n})
        with anyio.fail_after(5):
            batch = await anext(aiter(burst.follow(0)))
        assert batch[0].seq == 1
        closed.close()
        with anyio.fail_after(5):
            await closed.finished.wait()
        assert closed.committed_seq == 1
        await close_all(committer, [burst, closed])


async def test_a_round_with_nothing_due_after_it_lets_no_turn_of_the_loop_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the settle turns gather what concurrent requests are about to append; after a round that left
    # nothing due they would only delay the wait (each turn of the loop is a system call)
    settle_turns = 0
    checkpoint = anyio.lowlevel.checkpoint

    async def counted() -> None:
        nonlocal settle_turns
        settle_turns += sys._getframe(1).f_code is GroupCommitter.run.__code__
        await checkpoint()

    monkeypatch.setattr(anyio.lowlevel, "checkpoint", counted)
    store = RoundStore()
    committer, (log,) = shared_logs(store, "s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        await anyio.wait_all_tasks_blocked()
        settle_turns = 0
        log.append("agent", 1, {"update": "chunk"})
        with anyio.fail_after(5):
            await log.wait_committed(1)
        await anyio.wait_all_tasks_blocked()
        assert settle_turns == log_module.SETTLE_TURNS  # before the round only
        await close_all(committer, [log])
    assert store.rounds == [{"s": 1}]


async def test_a_flooding_session_does_not_starve_the_others() -> None:
    store = RoundStore()
    committer, (flood, quiet) = shared_logs(store, "fq")
    async with anyio.create_task_group() as tg:
        for n in range(20_000):
            flood.append("agent", 1, {"n": n})
        quiet.append("agent", 1, {"n": 0})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await flood.wait_committed(20_000)
        await close_all(committer, [flood, quiet])
    # the quiet session's record went with the first round, not after the flood
    assert store.rounds[0] == {"f": log_module.FIRST_BATCH_RECORDS, "q": 1}
    assert all(sum(counts.values()) <= log_module.MAX_BATCH_RECORDS for counts in store.rounds)
    assert [r.seq for r in await store.read("f", limit=30_000)] == list(range(1, 20_001))


async def test_a_burst_starts_with_a_small_batch_and_grows() -> None:
    store = RoundStore()
    committer, (log,) = shared_logs(store, "s")
    async with anyio.create_task_group() as tg:
        for n in range(10_000):
            log.append("agent", 1, {"n": n})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await log.wait_committed(10_000)
        await close_all(committer, [log])
    sizes = [counts["s"] for counts in store.rounds]
    assert sizes[:4] == [log_module.FIRST_BATCH_RECORDS * 2**n for n in range(4)]
    assert max(sizes) == log_module.MAX_BATCH_RECORDS
    assert sum(sizes) == 10_000


async def test_a_failing_session_does_not_fail_the_others_in_its_round() -> None:
    store = RoundStore()
    store.refused = {"b"}
    committer, logs = shared_logs(store, "abc")
    faults: list[StoreError] = []
    logs[1].on_fault = faults.append
    async with anyio.create_task_group() as tg:
        for log in logs:
            log.append("agent", 1, {"n": 1})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await logs[0].wait_committed(1)
            await logs[2].wait_committed(1)
            with pytest.raises(StoreFull):
                await logs[1].wait_committed(1)
        assert logs[0].fault is None
        assert logs[2].fault is None
        logs[1].append("agent", 1, {"n": 2})
        store.refused = set()  # space returns: b's records commit, in order
        with anyio.fail_after(5):
            assert await follow_to(logs[1], 2) == [1, 2]
        await close_all(committer, logs)
    assert [type(f) for f in faults] == [StoreFull]
    assert [r.seq for r in await store.read("b")] == [1, 2]


async def test_records_become_visible_only_once_their_transaction_committed() -> None:
    store = RoundStore()
    store.gate = anyio.Event()
    committer, (a, b) = shared_logs(store, "ab")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        a.append("agent", 1, {"n": 1})
        b.append("agent", 1, {"n": 1})
        with anyio.fail_after(5):
            await store.entered.wait()
        await anyio.wait_all_tasks_blocked()
        assert (a.committed_seq, b.committed_seq) == (0, 0)
        assert await a.read(0, 10) == []
        store.gate.set()
        with anyio.fail_after(5):
            assert await follow_to(a, 1) == [1]
            assert await follow_to(b, 1) == [1]
        await close_all(committer, [a, b])


async def test_texts_appended_at_once_follow_single_appends_in_seq_order_and_none_after_close() -> None:
    store = MemoryEventStore()
    log = SessionLog(store, "s", 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        log.append_scrubbed("agent", 1, '{"n":1}')
        log.append_scrubbed_many("agent", 1, ['{"n":2}', '{"n":3}', '{"n":4}'])
        log.append_scrubbed("agent", 1, '{"n":5}')
        with anyio.fail_after(5):
            await log.wait_committed(5)
        log.close()
        log.append_scrubbed_many("agent", 1, ['{"n":6}'])
    records = await store.read("s", limit=100)
    assert [(r.seq, r.payload) for r in records] == [(n, f'{{"n":{n}}}') for n in range(1, 6)]
    assert len({r.at for r in records[1:4]}) == 1
    assert log.last_seq == 5


class ForgetfulStore(MemoryEventStore):
    """Commits and keeps nothing: every record left in memory is the log's own."""

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        return None


def records_the_collector_walks(session_id: str) -> int:
    gc.collect()  # the collector stops tracking a plain tuple of strings and ints at its first look
    return sum(1 for o in gc.get_objects() if isinstance(o, tuple) and len(o) == 6 and o[0] == session_id)


async def test_the_committed_tail_reads_back_as_records_that_no_full_collection_walks() -> None:
    # A busy session keeps thousands of committed records for its readers; had the collector to
    # walk each of them, every full collection would pause all sessions longer as history grew.
    log = SessionLog(ForgetfulStore(), "tail-of-s", 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        for n in range(1, 1_001):
            log.append("agent", 1, {"n": n})
        with anyio.fail_after(5):
            await log.wait_committed(1_000)
        log.close()
    assert records_the_collector_walks("tail-of-s") == 0
    assert (EventRecord._fields[log_module._SEQ], EventRecord._fields[log_module._PAYLOAD]) == ("seq", "payload")
    records = await log.read(997, 3)
    assert [type(r) for r in records] == [EventRecord] * 3
    assert [(r.session_id, r.seq, r.sender, r.turn, r.payload) for r in records] == [
        ("tail-of-s", n, "agent", 1, f'{{"n":{n}}}') for n in (998, 999, 1000)
    ]


@pytest.mark.parametrize("followed", [False, True])
async def test_a_log_keeps_a_long_committed_tail_only_while_someone_follows_it(followed: bool) -> None:
    # Every live session kept thousands of committed records, read by nobody when nobody follows
    # it (a session prompted over REST): memory grew with each busy session's history. A reader
    # who comes later reads the store (which here forgets: what a read finds is the log's own).
    log = SessionLog(ForgetfulStore(), "s", 0)
    count = 4 * log_module.UNFOLLOWED_TAIL_RECORDS
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        if followed:
            tg.start_soon(follow_to, log, count)
        for n in range(1, count + 1):
            log.append("agent", 1, {"n": n})
        with anyio.fail_after(5):
            await log.wait_committed(count)
        log.close()
    oldest = await log.read(0, 1)
    assert [r.seq for r in oldest] == ([1] if followed else [])
    assert [r.seq for r in await log.read(count - 1, 1)] == [count]


async def test_a_followed_log_keeps_only_its_recent_records_past_the_newest_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A session an editor keeps open is followed for its whole life (by the daemon's forwarder to
    # the editor, always caught up): its 16,384 last records stayed in memory however old.
    clock = [1000.0]
    monkeypatch.setattr(log_module, "monotonic", lambda: clock[0])
    log = SessionLog(ForgetfulStore(), "s", 0)
    old = 4 * log_module.UNFOLLOWED_TAIL_RECORDS

    async def commit(n: int) -> None:
        log.append("agent", 1, {"n": n})
        with anyio.fail_after(5):
            await log.wait_committed(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        tg.start_soon(follow_to, log, old + 2)
        for n in range(1, old):
            log.append("agent", 1, {"n": n})
        await commit(old)
        assert [r.seq for r in await log.read(0, 1)] == [1]  # recent: kept for readers behind
        clock[0] += log_module.TAIL_SECONDS / 2
        await commit(old + 1)
        assert [r.seq for r in await log.read(0, 1)] == [1]
        clock[0] += log_module.TAIL_SECONDS
        await commit(old + 2)
        log.close()
    first_kept = old + 3 - log_module.UNFOLLOWED_TAIL_RECORDS  # the newest few stay, however old
    assert await log.read(first_kept - 2, 1) == []
    assert [r.seq for r in await log.read(first_kept - 1, 1)] == [first_kept]
    assert [r.seq for r in await log.read(old + 1, 1)] == [old + 2]
