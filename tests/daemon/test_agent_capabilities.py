"""What acpd offers an agent at initialize (its client capabilities), per agent, and that it serves
only what it offered."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, ClientCapabilities, DaemonConfig, FsCapabilities

from .helpers import all_events, new_session, updates

pytestmark = pytest.mark.anyio


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    no_files = AgentConfig(
        command=sys.executable,
        args=("-m", "acpd.testing.mock_agent", "--state-dir", str(tmp_path / "mock-nofs")),
        client_capabilities=ClientCapabilities(fs=FsCapabilities(read_text_file=False, write_text_file=False)),
    )
    return DaemonConfig(
        data_dir=str(tmp_path / "data"),
        db=":memory:",
        record_agents=str(tmp_path / "frames"),
        agents={"mock-nofs": no_files},
    )


def initialize_params(frames: Path, session_id: str) -> dict[str, object]:
    [recording] = frames.glob(f"{session_id}.*.jsonl")
    for line in recording.read_text().splitlines():
        frame = json.loads(line)
        message = frame["frame"]
        if isinstance(message, dict) and message.get("method") == "initialize":
            params: dict[str, object] = message["params"]
            return params
    raise AssertionError("no initialize frame recorded")


async def test_an_agent_whose_file_services_are_off_is_not_offered_them_nor_served(
    client: httpx.AsyncClient, config: DaemonConfig, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "kept.txt").write_text("secret\n")
    session = await new_session(client, work, agent="mock-nofs", policy={"permissions": "allow"})
    with anyio.fail_after(10):
        for prompt in (f"read {work / 'kept.txt'}", f"write {work / 'new.txt'} hello", "run echo from-the-terminal"):
            response = await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": prompt})
            assert response.status_code == 200, response.text
    texts = [u["content"]["text"] for u in updates(await all_events(client, session["id"]), "agent_message_chunk")]
    assert any(t.startswith("read error:") for t in texts), texts
    assert any(t.startswith("write error:") for t in texts), texts
    assert any("from-the-terminal" in t for t in texts), texts
    assert not (work / "new.txt").exists()
    offered = initialize_params(Path(config.record_agents), session["id"])["clientCapabilities"]
    assert offered == {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": True}


async def test_an_agent_with_no_capabilities_configured_is_offered_every_service(
    client: httpx.AsyncClient, config: DaemonConfig, tmp_path: Path
) -> None:
    session = await new_session(client, tmp_path)
    with anyio.fail_after(10):
        await client.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "mock:text=hi"})
    offered = initialize_params(Path(config.record_agents), session["id"])["clientCapabilities"]
    assert offered == {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}
