"""A real ``acpd serve`` with agents that misbehave while they start: it still stops on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from acpd.testing.daemon import running_daemon
from tests.processes import cmdlines

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_sigterm_during_a_hanging_agent_start_stops_the_daemon_and_the_agent_in_time(tmp_path: Path) -> None:
    marker = f"acpd-hanging-agent-{uuid.uuid4().hex}"
    started = tmp_path / "started"
    os.mkfifo(started)
    script = f"echo started > {started}; exec {sys.executable} -m acpd.testing.mock_agent --ignore initialize"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agents.hang]\ncommand = "sh"\nargs = ["-c", "{script} --name {marker}"]\nstartTimeoutSeconds = 600\n'
    )
    async with (
        running_daemon(tmp_path, "--config", str(config)) as daemon,
        daemon.client(timeout=60) as http,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_create_ignoring_errors, http, {"agent": "hang", "cwd": str(tmp_path)})
        with anyio.fail_after(20):
            await anyio.to_thread.run_sync(started.read_bytes)  # the agent runs, unanswered
        assert [line for _, line in cmdlines() if marker in line]
        daemon.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(5):
            await daemon.process.wait()
        tg.cancel_scope.cancel()
    assert daemon.process.returncode == 0  # a stop that finished in time is a clean exit
    assert [line for _, line in cmdlines() if marker in line] == []


async def _create_ignoring_errors(http: httpx.AsyncClient, body: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the daemon stops under this request on purpose
        await http.post("/v1/sessions", json=body)
