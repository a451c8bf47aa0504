"""A session forked, exported and imported again through the client."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from acpd.client import Acpd, AsyncAcpd
from acpd.client.errors import InvalidInput
from acpd.testing.daemon import Daemon

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 30


async def seqs_and_methods(client: AsyncAcpd, session_id: str) -> list[tuple[int, str | None]]:
    return [(record.seq, record.method) async for record in client.events(session_id)]


async def test_a_fork_carries_the_history_up_to_its_point(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        source = await app_client.create_session("mock", workdir, title="origin")
        first = await app_client.prompt(source.id, "text one")
        await app_client.prompt(source.id, "text two")
        fork = await app_client.fork(source.id, at_seq=first.last_seq, id="the-fork")
        history = await seqs_and_methods(app_client, fork.id)
        with pytest.raises(InvalidInput):
            await app_client.fork(source.id, at_seq=10_000)
    assert (fork.id, fork.title) == ("the-fork", "origin (fork)")
    assert [seq for seq, _ in history] == list(range(1, first.last_seq + 2))
    assert history[-1][1] == "_acpd/forked_from"


async def test_an_export_imports_again_as_the_same_history(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        source = await app_client.create_session("mock", workdir)
        await app_client.prompt(source.id, "text exported")
        for fmt in ("json", "jsonl"):
            exported = b"".join([chunk async for chunk in app_client.export(source.id, fmt)])
            copy = await app_client.import_session(exported, id=f"copy-{fmt}")
            assert copy.id == f"copy-{fmt}"
            assert await seqs_and_methods(app_client, copy.id) == await seqs_and_methods(app_client, source.id)
        markdown = b"".join([chunk async for chunk in app_client.export(source.id, "markdown")])
    assert b"exported" in markdown


@pytest.mark.e2e
async def test_the_sync_client_forks_exports_and_imports(daemon: Daemon, workdir: Path) -> None:
    def drive() -> tuple[int, int, int]:
        with Acpd(daemon.url, daemon.token, timeout=WAIT_SECONDS) as client:
            source = client.create_session("mock", workdir)
            answer = client.prompt(source.id, "text sync")
            fork = client.fork(source.id)
            copy = client.import_session(client.export(source.id, "jsonl"), id="sync-copy")
            assert [turn["turn"] for turn in client.turns(source.id)] == [1]
            assert client.usage("agent").group_by == "agent"
            assert list(client.tool_calls(session=source.id)) == []
            assert (client.tool_call_stats(session=source.id).model_extra or {})["total"] == {"toolCalls": 0}
            assert [s.id for s in client.sessions(q="sync")][:1] in ([source.id], [fork.id], [copy.id])
            return answer.last_seq, len(list(client.events(fork.id))), len(list(client.events(copy.id)))

    with anyio.fail_after(WAIT_SECONDS):
        last, forked, copied = await anyio.to_thread.run_sync(drive)
    assert (forked, copied) == (last + 1, last)


async def test_search_archive_turns_usage_and_the_tool_call_audit(app_client: AsyncAcpd, workdir: Path) -> None:
    with anyio.fail_after(WAIT_SECONDS):
        fruit = await app_client.create_session("mock", workdir)
        other = await app_client.create_session("mock", workdir)
        await app_client.prompt(fruit.id, "text banana bread")
        await app_client.prompt(fruit.id, "tool read\nusage 10 20")
        await app_client.prompt(other.id, "text something else")
        found = [s.id async for s in app_client.sessions(q="banana")]
        await app_client.update_session(other.id, archived=True)
        listed = [s.id async for s in app_client.sessions()]
        archived = [s.id async for s in app_client.sessions(archived=True)]
        every = [s.id async for s in app_client.sessions(archived="any", page_size=1)]
        turns = await app_client.turns(fruit.id)
        usage = await app_client.usage("session")
        calls = [row async for row in app_client.tool_calls(session=fruit.id, page_size=1)]
        stats = await app_client.tool_call_stats(session=fruit.id)
    assert found == [fruit.id]
    assert (listed, archived, sorted(every)) == ([fruit.id], [other.id], sorted([fruit.id, other.id]))
    assert [t["stopReason"] for t in turns] == ["end_turn", "end_turn"]
    assert usage.group_by == "session" and usage.total["inputTokens"] >= 10
    assert [row["kind"] for row in calls] == ["read"]
    assert (stats.model_extra or {})["total"] == {"toolCalls": 1}
