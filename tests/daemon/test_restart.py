"""A daemon restart (a new SessionManager on the same SQLite file) continues every session."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.protocol import methods
from acpd.store.sqlite import SqliteEventStore

pytestmark = pytest.mark.anyio


def mock(tmp_path: Path, *flags: str) -> AgentConfig:
    state = str(tmp_path / "mock-state")
    return AgentConfig(command=sys.executable, args=("-m", "acpd.testing.mock_agent", "--state-dir", state, *flags))


def restart_config(tmp_path: Path) -> DaemonConfig:
    agents = {
        "mock-load": mock(tmp_path, "--no-resume"),
        "mock-resume": mock(tmp_path),
        "mock-neither": mock(tmp_path, "--no-resume", "--no-load"),
    }
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=str(tmp_path / "acpd.db"), agents=agents)


async def run_prompt(manager: SessionManager, session_id: str, text: str) -> dict[str, object]:
    turn = await manager.prompt(session_id, text)
    with anyio.fail_after(10):
        await turn.done.wait()
    return turn.answer(session_id)


async def frames(manager: SessionManager, session_id: str) -> list[dict[str, object]]:
    records = await manager.store.read(session_id, limit=10_000)
    return [r.payload_object() for r in records]


@pytest.mark.parametrize(("agent", "how"), [("mock-load", "load"), ("mock-resume", "resume"), ("mock-neither", "new")])
async def test_after_a_restart_the_session_is_listed_and_its_agent_continues_it(
    tmp_path: Path, agent: str, how: str
) -> None:
    config = restart_config(tmp_path)
    store = await SqliteEventStore.open(config.resolved_db())
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"agent": agent, "cwd": str(tmp_path), "title": "keep me"})
        session_id = runtime.session_id
        backend_id = runtime.doc["backendSessionId"]
        await run_prompt(manager, session_id, "text before the restart")
    await store.aclose()

    store = await SqliteEventStore.open(config.resolved_db())
    async with SessionManager(config, store).running() as manager:
        page = await manager.list_sessions()
        assert [(s["id"], s["title"]) for s in page.items] == [(session_id, "keep me")]
        before = await frames(manager, session_id)
        answer = await run_prompt(manager, session_id, "text after the restart")
        assert answer["stopReason"] == "end_turn"
        assert answer["turn"] == 2
        after = await frames(manager, session_id)
        started = [f["params"] for f in after if f.get("method") == methods.ACPD_AGENT_STARTED]
        assert started[-1]["how"] == how  # type: ignore[index]
        continued = (await manager.runtime(session_id)).doc["backendSessionId"]
        assert (continued == backend_id) == (how != "new")
        # What the agent replays while loading is already in the log: it must not be recorded twice.
        new_frames = after[len(before) :]
        replayed = [f for f in new_frames if f.get("method") == "session/update" and f in before]
        assert [f for f in replayed if "before the restart" in str(f)] == []
    await store.aclose()
