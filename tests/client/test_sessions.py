"""Sessions, agents and settings through the client, against the daemon's app in process."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from acpd.client import AsyncAcpd
from acpd.client.errors import SessionNotFound

pytestmark = pytest.mark.anyio


async def test_a_session_is_created_read_updated_and_deleted_as_typed_models(
    app_client: AsyncAcpd, workdir: Path
) -> None:
    with anyio.fail_after(30):
        created = await app_client.create_session("mock", workdir, title="first")
        assert (created.agent, created.cwd, created.title, created.status) == ("mock", str(workdir), "first", "idle")
        assert created.created_at and created.last_seq
        updated = await app_client.update_session(created.id, model="mock-large", mode="plan", thought_level="high")
        assert (updated.model, updated.mode, updated.thought_level) == ("mock-large", "plan", "high")
        assert (await app_client.session(created.id)).model == "mock-large"
        await app_client.delete_session(created.id)
        with pytest.raises(SessionNotFound):
            await app_client.session(created.id)


async def test_a_field_this_client_does_not_know_is_kept(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(30):
        session = await app_client.create_session("mock", workdir)
    assert session.model_extra is not None
    wire = session.model_dump(by_alias=True)
    assert {"id", "agent", "createdAt", "lastSeq"} <= set(wire)


async def test_the_session_list_pages_itself_through_every_session_once(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(60):
        created = [(await app_client.create_session("mock", workdir)).id for _ in range(5)]
        listed = [session.id async for session in app_client.sessions(page_size=2)]
        mine = [session.id async for session in app_client.sessions(agent="mock", page_size=1000)]
    assert sorted(listed) == sorted(created)  # all five, each once, across three pages
    assert listed == mine  # the same order whatever the page size


async def test_the_agents_are_listed_as_typed_models(app_client: AsyncAcpd) -> None:
    with anyio.fail_after(30):
        agents = {agent.name: agent for agent in await app_client.agents()}
    assert agents["mock"].usable and agents["mock"].kind


async def test_a_session_switches_agents_and_keeps_its_history(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(60):
        session = await app_client.create_session("mock", workdir)
        before = await app_client.prompt(session.id, "text on the first agent")
        switched = await app_client.update_session(session.id, agent="mock-b")
        after = await app_client.prompt(session.id, "text on the second")
        history = [record.seq async for record in app_client.events(session.id)]
    assert switched.agent == "mock-b"
    assert switched.agent_info is not None and switched.agent_info["name"] == "mock-b"
    assert (before.turn, after.turn, after.text) == (1, 2, "on the second")
    assert history == list(range(1, after.last_seq + 1))
