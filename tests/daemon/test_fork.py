"""Fork: a new session whose history is another's up to a point, over REST and ACP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager

from .acp_client import acp_client
from .helpers import all_events, daemon_frames, new_session, prompted, wait_for_record

pytestmark = pytest.mark.anyio


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    """The daemon tests' config plus a second mock agent to fork onto."""
    second = AgentConfig(
        command=sys.executable, args=("-m", "acpd.testing.mock_agent", "--state-dir", str(tmp_path / "mock-b"))
    )
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"mock-b": second})


def shapes(events: list[dict[str, Any]]) -> list[tuple[int, str, int, str]]:
    """What a record says, whichever session holds it."""
    return [(e["seq"], e["sender"], e["turn"], str(e["payload"]).replace(e["sessionId"], "ID")) for e in events]


async def test_a_fork_continues_on_another_agent_with_the_earlier_turns(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    source = await new_session(client, workdir, title="Original")
    await prompted(client, source["id"], "text the secret is kumquat")
    await prompted(client, source["id"], "text second turn")
    response = await client.post(f"/v1/sessions/{source['id']}/fork", json={"agent": "mock-b"})
    assert response.status_code == 201, response.text
    fork = response.json()
    assert (fork["agent"], fork["title"], fork["turns"], fork["status"]) == ("mock-b", "Original (fork)", 2, "idle")
    original = await all_events(client, source["id"])
    forked = await all_events(client, fork["id"])
    assert shapes(forked[: len(original)]) == shapes(original)
    assert daemon_frames(forked, "_acpd/forked_from") == [
        {"sessionId": fork["id"], "source": source["id"], "atSeq": len(original)}
    ]
    answer = await prompted(client, fork["id"], "context")
    assert answer["turn"] == 3
    assert "the secret is kumquat" in answer["text"]  # the new agent got the earlier turns
    assert await all_events(client, source["id"]) == original  # the source is untouched


async def test_a_fork_at_a_seq_keeps_the_history_up_to_it(client: httpx.AsyncClient, workdir: Path) -> None:
    source = await new_session(client, workdir)
    first = await prompted(client, source["id"], "text one")
    await prompted(client, source["id"], "text two")
    response = await client.post(
        f"/v1/sessions/{source['id']}/fork", json={"atSeq": first["lastSeq"], "id": "branch", "title": "B"}
    )
    assert response.status_code == 201, response.text
    assert (response.json()["id"], response.json()["title"], response.json()["turns"]) == ("branch", "B", 1)
    forked = await all_events(client, "branch")
    assert [e["seq"] for e in forked] == list(range(1, first["lastSeq"] + 2))
    assert "two" not in str(forked)


async def test_a_fork_of_a_running_session_takes_its_finished_turns_only(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    source = await new_session(client, workdir)
    done = await prompted(client, source["id"], "text finished")

    async def slow_turn() -> None:
        await client.post(f"/v1/sessions/{source['id']}/prompt", json={"prompt": "sleep 30"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_turn)
        with anyio.fail_after(10):
            await wait_for_record(manager, source["id"], lambda r: r.turn == 2 and r.sender == "client")
            response = await client.post(f"/v1/sessions/{source['id']}/fork", json={})
            await client.post(f"/v1/sessions/{source['id']}/cancel")
    assert response.status_code == 201, response.text
    forked = await all_events(client, response.json()["id"])
    assert forked[-1]["payload"]["params"]["atSeq"] == done["lastSeq"]
    assert "sleep 30" not in str(forked)


@pytest.mark.parametrize("at_seq", [-1, 10_000, "3", True])
async def test_a_fork_at_a_seq_that_is_not_committed_is_refused(
    client: httpx.AsyncClient, workdir: Path, at_seq: object
) -> None:
    source = await new_session(client, workdir)
    response = await client.post(f"/v1/sessions/{source['id']}/fork", json={"atSeq": at_seq})
    assert response.status_code == 400
    assert '"atSeq"' in response.json()["detail"]
    assert len((await client.get("/v1/sessions")).json()["items"]) == 1


async def test_a_fork_of_an_unknown_session_or_with_unknown_fields_is_refused(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    assert (await client.post("/v1/sessions/nobody/fork", json={})).status_code == 404
    source = await new_session(client, workdir)
    response = await client.post(f"/v1/sessions/{source['id']}/fork", json={"atseq": 1})
    assert response.status_code == 400
    assert "atseq" in response.json()["detail"]


async def test_an_acp_client_forks_with_session_fork_and_goes_on_in_the_fork(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            caps = (await acp.initialize())["agentCapabilities"]["sessionCapabilities"]
            assert "fork" in caps
            session_id = (await acp.request("session/new", {"cwd": str(workdir), "mcpServers": []}))["sessionId"]
            await acp.prompt(session_id, "text remember plum")
            forked = await acp.request("session/fork", {"sessionId": session_id, "cwd": str(workdir)})
            assert forked["sessionId"] != session_id
            answer = await acp.prompt(forked["sessionId"], "context")
    assert answer["stopReason"] == "end_turn"
    assert "remember plum" in "".join(
        u["content"]["text"] for u in acp.updates(forked["sessionId"]) if u["sessionUpdate"] == "agent_message_chunk"
    )
    events = await all_events(client, forked["sessionId"])
    assert daemon_frames(events, "_acpd/forked_from")[0]["source"] == session_id
