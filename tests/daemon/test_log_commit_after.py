"""A log that commits after another (``commit_after``): never durable before the records it stands
for, in their transaction when it can be, and never left waiting for a log that fails or stops."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from acpd.daemon import log as log_module
from acpd.errors import StoreFull
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc, encoded_doc
from tests.daemon.test_log import DOC, RoundStore, close_all, follow_to, shared_logs

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def fresh_failure_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "_failures", log_module._FailureReport())


async def test_records_appended_after_another_logs_records_share_their_transaction() -> None:
    store = RoundStore()
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        session.append("agent", 1, {"update": 1})
        session.append("agent", 1, {"answer": 1})
        connection.commit_after(session, 2)
        connection.append("daemon", 0, {"refers": [1, 2]})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await connection.wait_committed(1)
        await close_all(committer, [session, connection])
    assert store.rounds == [{"s": 2, "c": 1}]


async def test_a_log_ready_before_the_one_it_commits_after_is_taken_after_it_in_the_same_round() -> None:
    store = RoundStore()
    committer, (connection, session) = shared_logs(store, "cs")
    async with anyio.create_task_group() as tg:
        connection.append("agent", 0, {"answer": "earlier"})  # owes nothing to the session
        session.append("agent", 1, {"update": 1})
        connection.commit_after(session, 1)
        connection.append("daemon", 0, {"refers": [1, 1]})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await connection.wait_committed(2)
        await close_all(committer, [session, connection])
    # the connection was ready before the session: the round takes the session first, then all of it
    assert store.rounds == [{"s": 1, "c": 2}]
    assert list(store.rounds[0]) == ["s", "c"]


async def test_what_commits_after_a_failing_log_fails_with_it_and_commits_once_it_does() -> None:
    store = RoundStore()
    store.refused = {"s"}
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        session.append("agent", 1, {"answer": 1})
        connection.commit_after(session, 1)
        connection.append("agent", 0, {"answer copy": 1})
        tg.start_soon(committer.run)
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await connection.wait_committed(1)  # its writers hear of the fault at once
        assert await store.read("c") == []  # never durable before what it answers from
        store.refused = set()
        with anyio.fail_after(5):
            assert await follow_to(connection, 1) == [1]
        await close_all(committer, [session, connection])
    assert [r.seq for r in await store.read("s")] == [1]
    first_with_c = next(i for i, counts in enumerate(store.rounds) if "c" in counts)
    first_with_s = next(i for i, counts in enumerate(store.rounds) if "s" in counts)
    assert first_with_s <= first_with_c


async def test_a_log_blocked_on_a_failing_one_reports_its_fault_and_commits_after_it() -> None:
    store = RoundStore()
    store.refused = {"s"}
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        session.append("agent", 1, {"answer": 1})
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await session.wait_committed(1)
        connection.commit_after(session, 1)
        connection.append("agent", 0, {"answer copy": 1})
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await connection.wait_committed(1)
        assert await store.read("c") == []
        store.refused = set()  # a reader waits the fault out, as a session's readers do
        with anyio.fail_after(5):
            assert await follow_to(connection, 1) == [1]
        await close_all(committer, [session, connection])
    assert [r.seq for r in await store.read("s")] == [1]
    assert [r.seq for r in await store.read("c")] == [1]


async def test_a_log_waiting_for_one_that_gave_up_is_not_left_waiting() -> None:
    store = RoundStore()
    store.refused = {"s"}
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        session.append("agent", 1, {"answer": 1})
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await session.wait_committed(1)
        connection.commit_after(session, 1)
        connection.append("agent", 0, {"answer copy": 1})
        session.close()  # the session stops while its store fails: it gives up its record
        with anyio.fail_after(5):
            await session.finished.wait()
            assert await follow_to(connection, 1) == [1]  # a reader waits out a failed try of its own
        await close_all(committer, [connection])
    assert await store.read("s") == []


async def test_a_follower_of_unsettled_records_gets_them_before_they_commit() -> None:
    store = RoundStore()
    store.gate = anyio.Event()
    committer, (session,) = shared_logs(store, "s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        follow = session.follow(0, unsettled=True)
        session.append("agent", 1, {"n": 1})
        with anyio.fail_after(5):
            first = await follow.__anext__()
            await store.entered.wait()  # its transaction is held
            session.append("agent", 1, {"n": 2})
            second = await follow.__anext__()
        assert [r.seq for r in first + second] == [1, 2]
        assert session.committed_seq == 0
        await follow.aclose()
        store.gate.set()
        await close_all(committer, [session])


async def test_a_log_that_waits_for_one_held_for_a_retry_commits_what_comes_before_and_then_waits() -> None:
    store = RoundStore()
    store.refused = {"s"}
    committer, (connection, session) = shared_logs(store, "cs", retry_seconds=3600)
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        session.append("agent", 1, {"answer": 1})
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await session.wait_committed(1)
        connection.append("agent", 0, {"answer": "earlier"})  # owes nothing to the session
        connection.commit_after(session, 1)
        connection.append("agent", 0, {"answer copy": 1})
        with anyio.fail_after(5):
            await connection.wait_committed(1)
            await anyio.wait_all_tasks_blocked()  # no round spins while it waits
        assert connection.committed_seq == 1
        store.refused = set()
        session.close()  # a close cuts the retry's wait short
        with anyio.fail_after(5):
            assert await follow_to(connection, 2) == [1, 2]
        await close_all(committer, [session, connection])
    assert [r.seq for r in await store.read("s")] == [1]


async def test_a_follower_of_unsettled_records_is_handed_no_more_than_the_next_batch_before_it_commits() -> None:
    store = RoundStore()
    committer, (session,) = shared_logs(store, "s")
    follow = session.follow(0, unsettled=True)
    for n in range(100):
        session.append("agent", 1, {"n": n})
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(5):
            first = await follow.__anext__()
            assert [r.seq for r in first] == list(range(1, log_module.FIRST_BATCH_RECORDS + 1))
            tg.start_soon(committer.run)
            seen = [r.seq for r in first]
            while seen[-1] < 100:
                seen += [r.seq for r in await follow.__anext__()]
        assert seen == list(range(1, 101))
        await follow.aclose()
        await close_all(committer, [session])


async def test_a_log_waiting_for_a_held_one_commits_in_its_round_once_the_hold_ends() -> None:
    store = RoundStore()
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        session.hold(seconds=3600)  # a turn waits for its agent's answer
        session.append("client", 1, {"prompt": 1})
        session.append("agent", 1, {"answer": 1})
        connection.commit_after(session, 2)
        connection.append("agent", 0, {"answer copy": 1})
        await anyio.wait_all_tasks_blocked()  # the connection waits for the held session
        assert store.rounds == []
        session.release()
        with anyio.fail_after(5):
            await connection.wait_committed(1)
        await close_all(committer, [session, connection])
    assert store.rounds == [{"s": 2, "c": 1}]


async def test_a_follower_of_unsettled_records_gets_those_of_a_hold_together_as_it_ends() -> None:
    store = RoundStore()
    committer, (session,) = shared_logs(store, "s")
    follow = session.follow(0, unsettled=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        batches: list[list[int]] = []

        async def read() -> None:
            async for records in follow:
                batches.append([r.seq for r in records])  # noqa: PERF401 (each batch as it comes)

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        session.hold(seconds=3600)  # a turn waits for its agent's answer
        for n in range(3):
            session.append("agent", 1, {"n": n})
            await anyio.wait_all_tasks_blocked()
        assert batches == []  # nothing of a hold commits before it ends: no need to hear of it sooner
        session.release()
        with anyio.fail_after(5):
            await session.wait_committed(3)
        assert batches == [[1, 2, 3]]
        session.append("agent", 1, {"n": 3})  # not held: heard of at once
        with anyio.fail_after(5):
            while len(batches) < 2:
                await anyio.wait_all_tasks_blocked()
        assert batches[1] == [4]
        tg.cancel_scope.cancel()
    await close_all(committer, [session])


async def test_a_follower_goes_on_from_where_a_hook_passed_records_on_as_a_hold_ended() -> None:
    store = RoundStore()
    committer, (session,) = shared_logs(store, "s")
    passed = 0
    woken: list[list[int]] = []

    def pass_all(hold_ended: bool) -> bool:
        nonlocal passed
        passed = session.last_seq
        return hold_ended

    def pass_none(hold_ended: bool) -> bool:
        return False

    follow = session.follow(0, unsettled=True, passed=lambda: passed)
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)

        async def read() -> None:
            async for records in follow:
                woken.append([r.seq for r in records])  # noqa: PERF401 (each batch as it comes)

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        session.on_queued.append(pass_all)
        session.hold(seconds=3600)
        session.append("agent", 1, {"n": 1})
        session.append("agent", 1, {"n": 2})
        session.release()
        with anyio.fail_after(5):
            await session.wait_committed(2)
        await anyio.wait_all_tasks_blocked()
        assert woken == []  # the hook passed them on: the follower was not woken for them
        session.on_queued[:] = [pass_none]
        session.hold(seconds=3600)
        session.append("agent", 1, {"n": 3})
        session.release()
        with anyio.fail_after(5):
            while not woken:
                await anyio.wait_all_tasks_blocked()
        assert woken == [[3]]  # on from where the hook left, not from where it last read
        tg.cancel_scope.cancel()
    await close_all(committer, [session])


async def test_a_queued_reference_grows_and_commits_no_earlier_than_what_it_grew_to_refer_to() -> None:
    store = RoundStore()
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        session.append("agent", 1, {"update": 1})
        with anyio.fail_after(5):
            await session.wait_committed(1)
        connection.commit_after(session, 1)  # committed already: nothing to wait for
        connection.append("daemon", 0, {"refers": [1, 1]})
        session.hold(seconds=3600)
        session.append("agent", 1, {"update": 2})
        connection.commit_after(session, 2)
        assert connection.amend_last('{"refers":[1,2]}')
        await anyio.wait_all_tasks_blocked()
        assert connection.committed_seq == 0  # it waits for the record it grew to refer to
        session.release()
        with anyio.fail_after(5):
            await connection.wait_committed(1)
        assert not connection.amend_last('{"refers":[1,3]}')  # taken: it grows no more
        await close_all(committer, [session, connection])
    assert [r.payload for r in await store.read("c")] == ['{"refers":[1,2]}']
    assert store.rounds[-1] == {"s": 1, "c": 1}


async def test_what_a_hold_queued_reaches_a_follower_even_when_the_next_hold_begins_at_once() -> None:
    store = RoundStore()
    committer, (session,) = shared_logs(store, "s")
    follow = session.follow(0, unsettled=True)
    batches: list[list[int]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)

        async def read() -> None:
            async for records in follow:
                batches.append([r.seq for r in records])  # noqa: PERF401 (each batch as it comes)

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        session.hold(seconds=3600)
        session.append("agent", 1, {"n": 1})
        session.release()
        session.hold(seconds=3600)  # the next turn, before the follower had its turn
        await anyio.wait_all_tasks_blocked()
        assert batches == [[1]]
        session.release()
        with anyio.fail_after(5):
            await session.wait_committed(1)
        tg.cancel_scope.cancel()
    await close_all(committer, [session])


async def test_a_log_committing_after_a_flooding_one_joins_the_full_round_that_takes_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A session floods (every round is full of its records) while a connection's log refers to
    # them as they come: each reference must commit with the records it stands for, not wait for
    # a round with room to spare (there is none until the flood ends: a reader of the
    # connection's log saw nothing of the flood until then).
    monkeypatch.setattr(log_module, "MAX_BATCH_RECORDS", 8)
    store = RoundStore()
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        for update in range(24):
            session.append("agent", 1, {"update": update})
        connection.commit_after(session, 16)
        connection.append("daemon", 0, {"refers": [1, 16]})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await session.wait_committed(24)
        await close_all(committer, [session, connection])
    assert store.rounds == [{"s": 8}, {"s": 8, "c": 1}, {"s": 8}]


class DocRoundStore(RoundStore):
    """A ``RoundStore`` that also remembers the documents each transaction saved (their ids), and
    refuses a transaction saving a document of the sessions in ``refused_docs``."""

    def __init__(self) -> None:
        super().__init__()
        self.doc_rounds: list[list[str]] = []
        self.refused_docs: set[str] = set()

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        ids = [encoded_doc(doc).keys.id for doc in sessions]
        if self.refused_docs.intersection(ids):
            raise StoreFull("the event store is full (database or disk is full): free disk space")
        await super().append_many(records, sessions=sessions)
        self.doc_rounds.append(ids)


async def test_what_commits_after_a_logs_document_shares_the_transaction_that_saves_it() -> None:
    store = DocRoundStore()
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        session.append("agent", 1, {"started": 1})
        version = session.save_doc(DOC)
        connection.commit_after(session, 1, doc_version=version)
        connection.append("agent", 0, {"answer": "the session is s"})
        tg.start_soon(committer.run)
        with anyio.fail_after(5):
            await connection.wait_committed(1)
        await close_all(committer, [session, connection])
    assert store.rounds == [{"s": 1, "c": 1}]
    assert store.doc_rounds == [["s"]]


async def test_what_commits_after_a_document_saved_once_its_records_committed_waits_for_that_document() -> None:
    # The records the answer follows are durable already; the document saved after them is not:
    # the answer must not be durable (nor readable) before it is.
    store = DocRoundStore()
    committer, (session, connection) = shared_logs(store, "sc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run)
        session.append("agent", 1, {"started": 1})
        with anyio.fail_after(5):
            await session.wait_committed(1)
        store.refused_docs = {"s"}
        version = session.save_doc(DOC)
        connection.commit_after(session, 1, doc_version=version)
        connection.append("agent", 0, {"answer": "the session is s"})
        with anyio.fail_after(5), pytest.raises(StoreFull):
            await connection.wait_committed(1)  # its writers hear of the document's fault
        assert await store.read("c") == []
        assert await store.get_session("s") is None
        store.refused_docs = set()
        with anyio.fail_after(5):
            assert await follow_to(connection, 1) == [1]
        await close_all(committer, [session, connection])
    assert await store.get_session("s") is not None
    saved = next(i for i, ids in enumerate(store.doc_rounds) if "s" in ids)
    answered = next(i for i, counts in enumerate(store.rounds) if "c" in counts)
    assert saved <= answered
