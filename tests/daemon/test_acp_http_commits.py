"""ACP over HTTP: a connection's log commits in the session's transactions, never before them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from acpd.config import DaemonConfig
from acpd.daemon import log as log_module
from acpd.daemon.acp_http import LOG_PREFIX, AcpHttpHub, HttpAcpConnection
from acpd.daemon.manager import SessionManager
from acpd.errors import StoreFull
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc, encoded_doc
from acpd.store.memory import MemoryEventStore
from acpd.store.sqlite import SqliteEventStore
from tests.daemon.helpers import FullDisk
from tests.daemon.test_acp_http import INIT, rpc
from tests.daemon.test_log import follow_to

pytestmark = pytest.mark.anyio


class HeldStore(MemoryEventStore):
    """Remembers the records of each transaction; holds the one with a prompt while ``hold`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions: list[list[EventRecord]] = []
        self.saved: list[list[str]] = []
        """The ids of the session documents each transaction saved."""
        self.hold: anyio.Event | None = None
        self.holding = anyio.Event()

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        if self.hold is not None and any('"session/prompt"' in r.payload and r.sender == "client" for r in records):
            self.holding.set()
            await self.hold.wait()
        await super().append_many(records, sessions=sessions)
        self.transactions.append(list(records))
        self.saved.append([encoded_doc(doc).keys.id for doc in sessions])


@pytest.fixture
async def held(config: DaemonConfig) -> AsyncIterator[tuple[SessionManager, HeldStore]]:
    store = HeldStore()
    async with SessionManager(config, store).running() as running:
        yield running, store
    await store.aclose()


def prompt(request_id: int, session_id: str) -> JsonObject:
    return rpc(request_id, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text hi"}]})


async def initialized(hub: AcpHttpHub, connection_id: str) -> HttpAcpConnection:
    """A new connection of ``hub`` to the mock agent, its ``initialize`` answered."""
    connection = await hub.connection(connection_id, agent="mock", create=True)
    await connection.post(INIT)
    return connection


async def new_session(connection: HttpAcpConnection, request_id: int, workdir: Path) -> str:
    new = await connection.post(rpc(request_id, "session/new", {"cwd": str(workdir), "mcpServers": []}))
    assert new is not None
    return str(new["result"]["sessionId"])


def committed_with(store: HeldStore, session_id: str, seq: int) -> int:
    """The number of the transaction that committed record ``seq`` of a log."""
    return next(
        i for i, t in enumerate(store.transactions) if any(r.session_id == session_id and r.seq == seq for r in t)
    )


def assert_never_before_what_it_refers_to(store: HeldStore, connection_log: str) -> None:
    for number, transaction in enumerate(store.transactions):
        for record in transaction:
            if record.session_id == connection_log and record.sender == "daemon":
                ref = jsonio.loads(record.payload)
                assert isinstance(ref, dict)
                assert committed_with(store, str(ref["session"]), int(ref["to"])) <= number


async def test_a_prompts_answer_and_updates_commit_in_the_transaction_of_the_turns_answer_not_before(
    held: tuple[SessionManager, HeldStore], workdir: Path
) -> None:
    manager, store = held
    hub = AcpHttpHub(manager)
    answers: list[JsonObject | None] = []
    with anyio.fail_after(20):
        connection = await initialized(hub, "conn-t")
        session_id = await new_session(connection, 2, workdir)
        store.hold = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def post() -> None:
                answers.append(await connection.post(prompt(3, session_id)))

            tg.start_soon(post)
            await store.holding.wait()
            # the turn runs on while its prompt's transaction is held: the update's reference and
            # the answer are logged for the connection, but nothing of it is durable, nor answered
            log = connection.log
            while log.last_seq - log.committed_seq < 2:
                await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            assert answers == []
            assert await manager.store.read(LOG_PREFIX + "conn-t", after=log.committed_seq) == []
            store.hold.set()
        assert answers == [{"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn"}}]
    runtime = await manager.runtime(session_id)
    answer_seq = runtime.log.committed_seq
    turn = committed_with(store, session_id, answer_seq)
    copies = [r for r in store.transactions[turn] if r.session_id == LOG_PREFIX + "conn-t"]
    # one transaction for the turn's answer, the reference to its update and the answer's copy
    assert [r.sender for r in copies] == ["daemon", "agent"]
    assert_never_before_what_it_refers_to(store, LOG_PREFIX + "conn-t")


async def test_a_session_news_answer_commits_with_the_new_session_in_one_transaction(
    held: tuple[SessionManager, HeldStore], workdir: Path
) -> None:
    manager, store = held
    hub = AcpHttpHub(manager)
    with anyio.fail_after(20):
        connection = await initialized(hub, "conn-n")
        session_id = await new_session(connection, 2, workdir)
    answered = next(
        i
        for i, t in enumerate(store.transactions)
        for r in t
        if r.session_id == LOG_PREFIX + "conn-n" and jsonio.loads(r.payload).get("id") == 2
    )
    # the agent's start, the session's document and the answer naming it: one commit, not two
    assert committed_with(store, session_id, 1) == answered
    assert session_id in store.saved[answered]
    assert all(session_id not in ids for ids in store.saved[:answered])


async def test_a_session_new_on_a_full_disk_is_a_store_error_and_its_answer_follows_once_there_is_room(
    config: DaemonConfig, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "STORE_RETRY_SECONDS", 0.01)  # space returning is seen at once
    monkeypatch.setattr(log_module, "_failures", log_module._FailureReport())
    disk = FullDisk()
    async with SessionManager(config, disk).running() as manager:
        hub = AcpHttpHub(manager)
        with anyio.fail_after(20):
            connection = await initialized(hub, "conn-f")
            disk.full = True
            with pytest.raises(StoreFull):
                await connection.post(rpc(2, "session/new", {"cwd": str(workdir), "mcpServers": []}))
            # nothing of the answer is durable, nor is the session it would name
            logged = await disk.read(LOG_PREFIX + "conn-f")
            assert all(jsonio.loads(r.payload).get("id") != 2 for r in logged)
            assert (await disk.list_sessions()).items == []
            disk.full = False
            await follow_to(connection.log, connection.log.last_seq)  # its retries commit it
        answers = [jsonio.loads(r.payload) for r in await disk.read(LOG_PREFIX + "conn-f")]
        [answer] = [a for a in answers if isinstance(a, dict) and a.get("id") == 2]
        assert isinstance(answer, dict)
        assert await disk.get_session(answer["result"]["sessionId"]) is not None


async def test_many_prompts_on_two_sessions_log_nothing_before_the_records_it_refers_to(
    held: tuple[SessionManager, HeldStore], workdir: Path
) -> None:
    manager, store = held
    hub = AcpHttpHub(manager)
    with anyio.fail_after(30):
        connection = await initialized(hub, "conn-u")
        sessions = [await new_session(connection, request_id, workdir) for request_id in (2, 3)]

        async def prompts(session_id: str, first_id: int) -> None:
            for n in range(20):
                answer = await connection.post(prompt(first_id + n, session_id))
                assert answer is not None
                assert answer["result"] == {"stopReason": "end_turn"}

        async with anyio.create_task_group() as tg:
            tg.start_soon(prompts, sessions[0], 100)
            tg.start_soon(prompts, sessions[1], 200)
    assert_never_before_what_it_refers_to(store, LOG_PREFIX + "conn-u")
    # by every transaction, no more answers were copied to the connection than the sessions recorded
    copied = dict.fromkeys(sessions, 0)
    recorded = dict.fromkeys(sessions, 0)
    for transaction in store.transactions:
        for record in transaction:
            message = jsonio.loads(record.payload)
            if not isinstance(message, dict) or "stopReason" not in str(message.get("result")):
                continue
            if record.session_id in recorded:
                recorded[record.session_id] += 1
            elif isinstance(message.get("id"), int) and message["id"] >= 100:
                copied[sessions[0] if message["id"] < 200 else sessions[1]] += 1
        assert all(copied[s] <= recorded[s] for s in sessions)
    assert copied == dict.fromkeys(sessions, 20)


async def test_a_burst_is_referenced_one_record_a_session_transaction_not_one_a_read(
    config: DaemonConfig, workdir: Path, tmp_path: Path
) -> None:
    transactions: list[list[EventRecord]] = []
    async with await SqliteEventStore.open(tmp_path / "acpd.db") as store:
        append_many = store.append_many

        async def recorded(records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()) -> None:
            await append_many(records, sessions=sessions)
            transactions.append(list(records))

        store.append_many = recorded  # type: ignore[method-assign]
        async with SessionManager(config, store).running() as manager:
            hub = AcpHttpHub(manager)
            with anyio.fail_after(60):
                connection = await initialized(hub, "conn-b")
                session_id = await new_session(connection, 2, workdir)
                before = len(transactions)
                text = {"type": "text", "text": "chunks 20000"}
                answer = await connection.post(rpc(3, "session/prompt", {"sessionId": session_id, "prompt": [text]}))
                assert answer is not None
                assert answer["result"] == {"stopReason": "end_turn"}
    turn = [t for t in transactions[before:] if any(r.session_id == session_id for r in t)]
    references = [r for t in transactions[before:] for r in t if r.sender == "daemon" and r.session_id != session_id]
    # the agent's output is read a few kilobytes at a time: a reference a read would be hundreds
    assert 0 < len(references) <= 2 * len(turn)
