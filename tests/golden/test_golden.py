"""Golden files: each real agent's recorded raw output → the events acpd records from it.

``<agent>.raw.jsonl`` is a real conversation (``scripts/record-goldens``); a replay agent plays it
back to an in-process daemon, and the session's events must equal ``<agent>.events.jsonl``, with
every tool call's lifecycle coherent. ``ACPD_UPDATE_GOLDEN=1`` rewrites the expected files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.protocol import jsonio
from acpd.store.memory import MemoryEventStore
from tests.agents.test_real_agents import lifecycle_problems

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
RECORDINGS = sorted(HERE.glob("*.raw.jsonl"))
REPLAY_AGENT = HERE / "replay_agent.py"
UPDATE = os.environ.get("ACPD_UPDATE_GOLDEN") == "1"
VARYING = ("sessionId",)


def prompt_of(recording: Path) -> list[Any]:
    for line in recording.read_text().splitlines():
        entry = jsonio.loads(line)
        assert isinstance(entry, dict)
        frame = entry["frame"]
        if entry["dir"] == "out" and frame.get("method") == "session/prompt":
            return list(frame["params"]["prompt"])
    raise AssertionError(f"{recording.name}: no session/prompt recorded")


def scrub(value: Any) -> Any:
    """The event without what differs from run to run (the daemon's session id)."""
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items() if key not in VARYING}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


async def replay(recording: Path, workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The session's events (as the golden file has them) and the blocking prompt's answer."""
    agent = AgentConfig(command=sys.executable, args=(str(REPLAY_AGENT), str(recording)))
    config = DaemonConfig(data_dir=str(workdir / "data"), db=":memory:", agents={"replay": agent})
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        transport = httpx.ASGITransport(app=create_app(manager))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4520", timeout=30) as http:
            body = {"agent": "replay", "cwd": str(workdir), "policy": {"permissions": "allow"}}
            session_id = (await http.post("/v1/sessions", json=body)).json()["id"]
            with anyio.fail_after(20):
                prompt = {"prompt": prompt_of(recording)}
                answer = (await http.post(f"/v1/sessions/{session_id}/prompt", json=prompt)).json()
            items = (await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 5000})).json()["items"]
    await store.aclose()
    # The prompt's own record races with the agent's start-up chatter (as it does live): the
    # golden order is that of what the agent said and what the daemon made of it.
    events = [
        {"sender": item["sender"], "payload": scrub(item["payload"])} for item in items if item["sender"] != "client"
    ]
    return events, answer


@pytest.mark.parametrize("recording", RECORDINGS, ids=[path.name.split(".")[0] for path in RECORDINGS])
async def test_a_recorded_agent_conversation_becomes_the_golden_events(recording: Path, tmp_path: Path) -> None:
    events, _ = await replay(recording, tmp_path)
    expected_path = recording.with_name(recording.name.replace(".raw.", ".events."))
    if UPDATE:
        expected_path.write_text("".join(jsonio.dumps_str(event) + "\n" for event in events))
    expected = [jsonio.loads(line) for line in expected_path.read_text().splitlines()]
    assert events == expected
    updates = [e["payload"]["params"]["update"] for e in events if e["payload"].get("method") == "session/update"]
    assert lifecycle_problems(updates) == []
    assert any(u["sessionUpdate"] == "tool_call" for u in updates)
    assert events[-1]["payload"]["result"]["stopReason"] == "end_turn"
    assert events[0]["payload"]["method"] == "_acpd/agent_started"


@pytest.mark.parametrize("recording", RECORDINGS, ids=[path.name.split(".")[0] for path in RECORDINGS])
async def test_every_agents_turn_reports_its_usage_in_the_log_and_in_the_answer(
    recording: Path, tmp_path: Path
) -> None:
    events, answer = await replay(recording, tmp_path)
    updates = [e["payload"]["params"]["update"] for e in events if e["payload"].get("method") == "session/update"]
    usage_updates = [u for u in updates if u["sessionUpdate"] == "usage_update"]
    assert usage_updates, "a usage_update, the agent's own or one made from its answer"
    assert all(isinstance(u["used"], int) and isinstance(u["size"], int) for u in usage_updates)
    assert answer["usage"]["contextUsed"] == usage_updates[-1]["used"]
    assert answer["usage"]["contextSize"] == usage_updates[-1]["size"]


def test_there_is_a_recording_for_every_preset() -> None:
    from acpd.presets import PRESETS

    assert sorted(path.name.split(".")[0] for path in RECORDINGS) == sorted(PRESETS)
