"""Secrets from an agent's environment never enter the event log (DESIGN §7)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from acpd.adapters.secrets import redact
from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore

pytestmark = pytest.mark.anyio

SECRET = "sk-test-0123456789abcdef"


def test_redact_hides_values_of_secret_looking_variables_only() -> None:
    env = {"MY_API_KEY": SECRET, "GH_TOKEN": "ghp-987654321", "HOME": "/home/somebody", "SHORT_KEY": "abc"}
    text = f"key={SECRET} token=ghp-987654321 home=/home/somebody short=abc"
    assert redact(text, env) == "key=*** token=*** home=/home/somebody short=abc"


async def test_an_agent_printing_its_key_on_stderr_leaves_no_trace_of_it_in_the_log(tmp_path: Path) -> None:
    script = f'echo "starting with key $MY_API_KEY" >&2; exec {sys.executable} -m acpd.testing.mock_agent'
    agent = AgentConfig(command="sh", args=("-c", script), env={"MY_API_KEY": SECRET})
    config = DaemonConfig(data_dir=str(tmp_path), db=":memory:", agents={"leaky": agent})
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        runtime = await manager.create({"agent": "leaky", "cwd": str(tmp_path)})
        turn = await manager.prompt(runtime.session_id, "crash 3")
        with anyio.fail_after(10):
            await turn.done.wait()
        records = await store.read(runtime.session_id, limit=1000)
    log = "".join(r.payload for r in records)
    assert "_acpd/agent_exited" in log
    assert "starting with key ***" in log
    assert SECRET not in log
