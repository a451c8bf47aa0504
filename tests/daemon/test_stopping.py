"""Stopping the daemon under a running turn, in process: the turn is cancelled the normal way and
answered before the sessions close, so its stream ends with the answer and the log is complete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord

from .helpers import new_session, wait_for_record

pytestmark = pytest.mark.anyio

SLOW_TURN = "text working\nsleep 100"


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    """The daemon tests' config plus an agent that never heeds a cancel."""
    deaf = AgentConfig(command=sys.executable, args=("-m", "acpd.testing.mock_agent", "--ignore", "session/cancel"))
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"deaf": deaf})


def is_answer(record: EventRecord) -> bool:
    payload = record.payload_object()
    return payload.get("id") == "turn-1" and "method" not in payload


async def working(manager: SessionManager, session_id: str) -> None:
    """Return once the agent is in the turn (it said its first words)."""
    await wait_for_record(manager, session_id, lambda r: '"text":"working"' in r.payload)


async def stored(manager: SessionManager, session_id: str) -> list[EventRecord]:
    return await manager.store.read(session_id, limit=1000)


def sse_data(body: str) -> list[dict[str, Any]]:
    return [jsonio.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


async def test_a_prompt_stream_cut_by_the_stop_ends_with_the_turns_cancelled_answer_which_the_log_holds(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    streamed: list[httpx.Response] = []

    async def stream_prompt() -> None:
        headers = {"Accept": "text/event-stream"}
        url = f"/v1/sessions/{session_id}/prompt"
        streamed.append(await client.post(url, json={"prompt": SLOW_TURN}, headers=headers))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream_prompt)
            await working(manager, session_id)
            await manager.shutdown()
        records = await stored(manager, session_id)
        doc = await manager.store.get_session(session_id)
    last = sse_data(streamed[0].text)[-1]
    assert last["payload"]["result"]["stopReason"] == "cancelled"
    answer = next(r for r in records if is_answer(r))
    assert answer.seq == last["seq"]
    assert answer.sender == "agent"
    # Only the agent's expected exit follows the answer: nothing is left for a restart to repair.
    after = [r.payload_object()["method"] for r in records if r.seq > answer.seq]
    assert after == ["_acpd/agent_exited"]
    assert doc is not None and doc["status"] == "idle"


async def test_a_blocking_prompt_cut_by_the_stop_gets_the_cancelled_answer_the_log_holds(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    answers: list[httpx.Response] = []

    async def blocking_prompt() -> None:
        answers.append(await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": SLOW_TURN}))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(blocking_prompt)
            await working(manager, session_id)
            await manager.shutdown()
        records = await stored(manager, session_id)
    answer = answers[0].json()
    assert answer["stopReason"] == "cancelled"
    recorded = next(r for r in records if is_answer(r))
    assert recorded.seq == answer["lastSeq"]
    assert recorded.payload_object()["result"]["stopReason"] == "cancelled"


async def test_the_stop_ends_a_turn_whose_agent_ignores_the_cancel_with_a_cancelled_answer_in_the_log(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir, agent="deaf"))["id"]
    turn = await manager.prompt(session_id, SLOW_TURN)
    with anyio.fail_after(10):
        await working(manager, session_id)
        await manager.shutdown()
        records = await stored(manager, session_id)
    assert turn.response is not None and turn.response["result"]["stopReason"] == "cancelled"
    payloads = [r.payload_object() for r in records]
    errors = [p["params"]["code"] for p in payloads if p.get("method") == "_acpd/error"]
    assert errors == ["CANCEL_IGNORED"]
    answer = next(r for r in records if is_answer(r))
    assert answer.payload_object()["result"]["stopReason"] == "cancelled"
    assert answer.seq == turn.last_seq
