"""Whatever an agent writes, what the daemon stores and holds stays bounded (DESIGN §7)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.adapters.floods import MAX_INVALID_FRAMES, MAX_UNSOLICITED_FRAMES
from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.log import HIGH_WATER_BYTES, MAX_BATCH_BYTES, TAIL_BYTES, SessionLog
from acpd.daemon.manager import SessionManager
from acpd.daemon.session import MAX_EARLY_BYTES
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc
from acpd.store.memory import MemoryEventStore

from .helpers import all_events, daemon_frames, new_session, wait_for_frame

pytestmark = pytest.mark.anyio

MOCK = f"{sys.executable} -m acpd.testing.mock_agent"
EARLY_FLOOD = (
    "import sys, time\n"
    'line = b\'{"jsonrpc":"2.0","method":"_vendor/noise","params":{"pad":"\' + b\'x\' * 1048576 + b\'"}}\\n\'\n'
    f"for _ in range({MAX_EARLY_BYTES // 1048576 + 2}):\n"
    "    sys.stdout.buffer.write(line)\n"
    "sys.stdout.flush()\n"
    "time.sleep(600)\n"
)

IDLE_FLOOD = (
    "import json, sys, time\n"
    "def send(message):\n"
    "    sys.stdout.write(json.dumps(message) + '\\n')\n"
    "    sys.stdout.flush()\n"
    "answers = {'initialize': {'protocolVersion': 1}, 'session/new': {'sessionId': 's'},\n"
    "           'session/prompt': {'stopReason': 'end_turn'}}\n"
    "for line in sys.stdin:\n"
    "    request = json.loads(line)\n"
    "    if 'id' in request:\n"
    "        send({'jsonrpc': '2.0', 'id': request['id'], 'result': answers.get(request['method'], {})})\n"
    "    if request.get('method') == 'session/prompt':\n"
    "        time.sleep(0.5)  # the turn is over: what follows, nobody asked for\n"
    "        noise = json.dumps({'jsonrpc': '2.0', 'method': '_vendor/noise', 'params': {}}) + '\\n'\n"
    "        sys.stdout.write(noise * 5000)\n"
    "        sys.stdout.flush()\n"
)


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    agents = {
        "garbled-start": AgentConfig(command="sh", args=("-c", f"yes not-json | head -n 5000; exec {MOCK}")),
        "idle-flood": AgentConfig(command=sys.executable, args=("-c", IDLE_FLOOD)),
        "chatty-start": AgentConfig(command=sys.executable, args=("-c", EARLY_FLOOD), start_timeout_seconds=60),
    }
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents=agents)


def protocol_errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in daemon_frames(events, "_acpd/error") if e["code"] == "AGENT_PROTOCOL_ERROR"]


async def invalid_frames_counted(manager: SessionManager, session_id: str, count: int) -> None:
    """Follow the log until its protocol errors account for ``count`` invalid frames."""
    runtime = await manager.runtime(session_id)
    counted = 0
    async for batch in runtime.log.follow(0):
        for record in batch:
            params = record.payload_object().get("params") or {}
            if params.get("code") == "AGENT_PROTOCOL_ERROR":
                counted += params["data"]["count"]
        if counted >= count:
            return


async def test_invalid_lines_are_recorded_once_and_then_summarized_with_a_count(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    with anyio.fail_after(20):
        answer = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "garbage 500\ntext ok"})
        assert answer.json()["stopReason"] == "end_turn"
        await invalid_frames_counted(manager, session["id"], 500)  # the summary follows within a second
    errors = protocol_errors(await all_events(client, session["id"]))
    assert errors[0]["data"]["count"] == 1
    assert sum(e["data"]["count"] for e in errors) == 500
    assert len(errors) <= 3
    assert "not JSON" in errors[0]["data"]["excerpt"]


async def test_an_agent_flooding_invalid_lines_is_stopped_and_its_turn_fails_saying_why(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    session = await new_session(client, workdir)
    with anyio.fail_after(20):
        answer = await client.post(
            f"/v1/sessions/{session['id']}/prompt", json={"prompt": f"garbage {MAX_INVALID_FRAMES * 50}\nsleep 60"}
        )
    assert answer.status_code == 502
    assert answer.json()["type"] == "urn:acpd:problem:agent-exited"
    assert "invalid frames" in answer.json()["detail"]
    events = await all_events(client, session["id"])
    floods = [e for e in daemon_frames(events, "_acpd/error") if e["code"] == "AGENT_OUTPUT_FLOOD"]
    assert len(floods) == 1
    assert floods[0]["data"]["count"] == MAX_INVALID_FRAMES + 1
    assert len(events) < 20
    assert [e["expected"] for e in daemon_frames(events, "_acpd/agent_exited")] == [False]
    with anyio.fail_after(20):
        again = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "text alive again"})
    assert again.json()["stopReason"] == "end_turn"


async def test_an_agent_flooding_invalid_lines_while_it_starts_fails_the_start(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    with anyio.fail_after(20):
        response = await client.post("/v1/sessions", json={"agent": "garbled-start", "cwd": str(workdir)})
    assert response.status_code == 502
    assert "invalid frames" in response.json()["detail"]
    assert (await client.get("/v1/sessions")).json()["items"] == []


async def test_an_agent_saying_too_much_before_its_session_opens_fails_the_start(
    client: httpx.AsyncClient, workdir: Path
) -> None:
    with anyio.fail_after(30):
        response = await client.post("/v1/sessions", json={"agent": "chatty-start", "cwd": str(workdir)})
    assert response.status_code == 502
    assert f"more than {MAX_EARLY_BYTES} bytes before opening its session" in response.json()["detail"]
    assert (await client.get("/v1/sessions")).json()["items"] == []


async def test_a_log_of_large_frames_holds_a_bounded_number_of_bytes_and_commits_them_in_bounded_batches() -> None:
    store = MemoryEventStore()
    log = SessionLog(store, "s", 0)
    big = '"' + "x" * (1024 * 1024) + '"'  # one string shared by every record: the test itself stays small
    largest_batch = 0
    append_many = store.append_many

    async def measured_append(
        records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        nonlocal largest_batch
        largest_batch = max(largest_batch, sum(len(r.payload) for r in records))
        await append_many(records, sessions=sessions)

    store.append_many = measured_append  # type: ignore[method-assign]
    held = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run_flusher)
        with anyio.fail_after(20):
            for _ in range(300):
                log.append("agent", 1, big)
                await log.wait_capacity()  # as the agent's reader does
                held.append(log.held_bytes)
            await log.wait_committed(300)
        log.close()
    assert max(held) <= HIGH_WATER_BYTES + 2 * TAIL_BYTES + len(big)
    assert log.held_bytes <= 2 * TAIL_BYTES + len(big)
    assert 0 < largest_batch <= MAX_BATCH_BYTES
    assert [r.seq for r in await log.read(0, 1000)] == list(range(1, 301))


async def test_an_agent_sending_a_flood_of_messages_outside_a_turn_is_stopped(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir, agent="idle-flood")
    with anyio.fail_after(20):
        answer = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "hi"})
        assert answer.json()["stopReason"] == "end_turn"
        await wait_for_frame(manager, session["id"], "_acpd/agent_exited")
    events = await all_events(client, session["id"])
    floods = [e for e in daemon_frames(events, "_acpd/error") if e["code"] == "AGENT_OUTPUT_FLOOD"]
    assert [(f["data"]["kind"], f["data"]["method"]) for f in floods] == [("unsolicited", "_vendor/noise")]
    assert "outside a turn" in floods[0]["message"]
    assert len(events) < MAX_UNSOLICITED_FRAMES + 20
