"""Session creates at once: each id is claimed on its own, so creates and loads of different
sessions never wait for each other, and two creates of one id make one session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from acpd.config import DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.errors import InvalidSetting, SessionExists
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc, encoded_doc
from acpd.store.memory import MemoryEventStore

pytestmark = pytest.mark.anyio


class HeldLookups(MemoryEventStore):
    """A store whose lookups of the session ``held`` wait until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.held = "slow"
        self.release = anyio.Event()
        self.holding = anyio.Event()

    async def get_session(self, session_id: str) -> SessionDoc | None:
        if session_id == self.held:
            self.holding.set()
            await self.release.wait()
        return await super().get_session(session_id)


@asynccontextmanager
async def running_on(store: MemoryEventStore, tmp_path: Path) -> AsyncIterator[SessionManager]:
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:")
    async with SessionManager(config, store).running() as manager:
        yield manager


@pytest.fixture
async def held(tmp_path: Path) -> AsyncIterator[tuple[SessionManager, HeldLookups]]:
    store = HeldLookups()
    async with running_on(store, tmp_path) as manager:
        yield manager, store


async def test_a_create_does_not_wait_for_another_sessions_create(
    held: tuple[SessionManager, HeldLookups], workdir: Path
) -> None:
    manager, store = held
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.create, {"id": "slow", "agent": "mock", "cwd": str(workdir)})
        with anyio.fail_after(5):
            await store.holding.wait()
        with anyio.fail_after(30):
            fast = await manager.create({"id": "fast", "agent": "mock", "cwd": str(workdir)})
        assert fast.session_id == "fast"
        store.release.set()
    assert (await manager.runtime("slow")).session_id == "slow"


async def test_two_creates_of_one_id_make_one_session(held: tuple[SessionManager, HeldLookups], workdir: Path) -> None:
    manager, store = held
    outcomes: list[str] = []

    async def create() -> None:
        try:
            await manager.create({"id": "slow", "agent": "mock", "cwd": str(workdir)})
            outcomes.append("created")
        except SessionExists:
            outcomes.append("exists")

    async with anyio.create_task_group() as tg:
        tg.start_soon(create)
        tg.start_soon(create)
        with anyio.fail_after(5):
            await store.holding.wait()
        store.release.set()
    assert sorted(outcomes) == ["created", "exists"]


async def test_a_load_during_the_create_of_its_session_gets_the_created_session(
    held: tuple[SessionManager, HeldLookups], workdir: Path
) -> None:
    manager, store = held
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.create, {"id": "slow", "agent": "mock", "cwd": str(workdir)})
        with anyio.fail_after(5):
            await store.holding.wait()
        store.held = ""  # the load's own lookup is not held
        loaded: list[object] = []

        async def load() -> None:
            loaded.append(await manager.runtime("slow"))

        tg.start_soon(load)
        await anyio.wait_all_tasks_blocked()
        assert loaded == []  # it waits for the create's claim, not a lookup of its own
        store.release.set()
    assert loaded == [manager._runtimes["slow"]]


async def test_many_creates_at_once_all_succeed(manager: SessionManager, workdir: Path) -> None:
    runtimes: list[str] = []

    async def create(n: int) -> None:
        runtimes.append((await manager.create({"id": f"s{n}", "agent": "mock", "cwd": str(workdir)})).session_id)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(create, n)
    assert sorted(runtimes) == sorted(f"s{n}" for n in range(20))


class CountedWrites(MemoryEventStore):
    """A store that counts its lookups and its write transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.transactions: list[tuple[int, list[str]]] = []  # (records, documents' ids) each

    async def get_session(self, session_id: str) -> SessionDoc | None:
        self.lookups += 1
        return await super().get_session(session_id)

    async def save_session(self, doc: SessionDoc) -> None:
        self.transactions.append((0, [str(doc["id"])]))
        await super().save_session(doc)

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        self.transactions.append((len(records), [encoded_doc(doc).keys.id for doc in sessions]))
        await super().append_many(records, sessions=sessions)


@pytest.fixture
async def counted(tmp_path: Path) -> AsyncIterator[tuple[SessionManager, CountedWrites]]:
    store = CountedWrites()
    async with running_on(store, tmp_path) as manager:
        yield manager, store


async def test_a_create_commits_its_document_and_its_agents_start_in_one_transaction(
    counted: tuple[SessionManager, CountedWrites], workdir: Path
) -> None:
    manager, store = counted
    with anyio.fail_after(30):
        runtime = await manager.create({"agent": "mock", "cwd": str(workdir)})
    mine = [t for t in store.transactions if runtime.session_id in t[1]]
    assert mine == [(1, [runtime.session_id])]  # _acpd/agent_started and the document, together
    stored = await store.get_session(runtime.session_id)
    assert stored is not None and stored["backendSessionId"] == runtime.doc["backendSessionId"]
    assert [json.loads(r.payload)["method"] for r in await store.read(runtime.session_id)] == ["_acpd/agent_started"]


async def test_a_create_without_an_id_looks_nothing_up_and_one_with_an_id_looks_it_up(
    counted: tuple[SessionManager, CountedWrites], workdir: Path
) -> None:
    manager, store = counted
    with anyio.fail_after(30):
        await manager.create({"agent": "mock", "cwd": str(workdir)})
        assert store.lookups == 0  # a fresh random id names no stored session
        await manager.create({"id": "chosen", "agent": "mock", "cwd": str(workdir)})
    assert store.lookups == 1


async def test_a_create_of_an_id_stored_but_not_loaded_is_refused(
    counted: tuple[SessionManager, CountedWrites], workdir: Path
) -> None:
    manager, _ = counted
    with anyio.fail_after(30):
        await manager.create({"id": "taken", "agent": "mock", "cwd": str(workdir)})
        await manager.close("taken")
        assert "taken" not in manager.live_sessions()
        with pytest.raises(SessionExists):
            await manager.create({"id": "taken", "agent": "mock", "cwd": str(workdir)})


async def test_a_create_refused_once_its_agent_runs_stores_nothing(
    counted: tuple[SessionManager, CountedWrites], workdir: Path
) -> None:
    manager, store = counted
    with anyio.fail_after(30), pytest.raises(InvalidSetting):  # an option the agent does not offer
        await manager.create({"id": "failing", "agent": "mock", "cwd": str(workdir), "config": {"nope": "x"}})
    assert await store.get_session("failing") is None
    assert await store.read("failing") == []
    assert "failing" not in manager.live_sessions()
