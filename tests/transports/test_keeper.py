"""The keeper (Linux): nothing an agent started outlives a cancelled turn's command or the daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from acpd.protocol import jsonio
from acpd.transports.contained import CAN_KEEP
from acpd.transports.process import (
    TERM_GRACE_SECONDS,
    ProcessSpec,
    open_process_transport,
    process_mark,
)
from tests.processes import pidfds, wait_all_ended
from tests.transports.test_process_transport import AGENT, is_running, messages_of

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(not CAN_KEEP, reason="the keeper needs Linux /proc")]

HOLDER = Path(__file__).parent / "fixtures" / "holder.py"
ROOT = Path(__file__).parents[2]


async def test_a_detached_command_started_since_the_mark_is_stopped_and_the_agents_own_helper_is_not() -> None:
    mark = process_mark()
    async with open_process_transport(ProcessSpec(sys.executable, [str(AGENT), "tools"])) as agent:
        with anyio.fail_after(5):
            [started] = messages_of(await agent.receive())
        with pidfds([started["command"]]) as fds, anyio.fail_after(TERM_GRACE_SECONDS + 2):
            assert await agent.stop_detached_since(mark) == 1
            await wait_all_ended(fds)
        assert is_running(started["helper"])
        with anyio.fail_after(5):
            await agent.send(b'{"still":"here"}')
            assert messages_of(await agent.receive()) == [{"still": "here"}]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
async def test_an_agent_killed_by_a_signal_is_reported_as_killed_by_it_through_the_keeper(signum: int) -> None:
    async with open_process_transport(ProcessSpec(sys.executable, [str(AGENT), "die", str(int(signum))])) as agent:
        with anyio.fail_after(5):
            assert await agent.wait() == -signum


async def test_the_agent_starts_with_no_signal_ignored_though_the_python_keeper_ignores_sigpipe() -> None:
    # A shell, not the Python fixture: Python ignores SIGPIPE itself as it starts.
    script = "grep SigIgn /proc/$$/status; exec cat"
    async with open_process_transport(ProcessSpec("/bin/sh", ["-c", script])) as agent:
        with anyio.fail_after(5):
            [line] = await agent.receive()
    assert line == b"SigIgn:\t0000000000000000"


async def test_an_agent_whose_keeper_is_killed_is_stopped_too() -> None:
    async with open_process_transport(ProcessSpec(sys.executable, [str(AGENT), "tools"])) as agent:
        with anyio.fail_after(5):
            [started] = messages_of(await agent.receive())
        children = [pid for pid in all_pids() if parent_of(pid) == agent.pid]
        assert children, "the keeper has the agent as its child"
        with pidfds(children) as fds:
            os.kill(agent.pid, signal.SIGKILL)
            await wait_all_ended(fds)
        # What the agent left in the keeper's session goes with the close; a command that left the
        # session as well escapes a keeper killed from outside (the daemon never does that alone).
        with pidfds([started["helper"]]) as fds, anyio.fail_after(TERM_GRACE_SECONDS + 3):
            await agent.aclose()
            await wait_all_ended(fds)
        os.kill(started["command"], signal.SIGKILL)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


async def test_a_detached_command_older_than_the_mark_is_left_running() -> None:
    async with open_process_transport(ProcessSpec(sys.executable, [str(AGENT), "tools"])) as agent:
        with anyio.fail_after(5):
            [started] = messages_of(await agent.receive())
        assert await agent.stop_detached_since(process_mark() + 100) == 0
        assert is_running(started["command"])


async def test_killing_the_daemon_outright_stops_the_agent_and_its_setsid_grandchild() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(HOLDER), "grandchild", "echo"]
    async with await anyio.open_process(command, stdout=subprocess.PIPE, env=env, cwd=ROOT) as holder:
        assert holder.stdout is not None
        lines = LineReader(holder.stdout)
        try:
            with anyio.fail_after(10):
                keeper = (await lines.message())["keeper"]
                grandchild = (await lines.message())["grandchild"]
            with pidfds([keeper, grandchild]) as fds:
                holder.send_signal(signal.SIGKILL)
                with anyio.fail_after(TERM_GRACE_SECONDS + 3):
                    await wait_all_ended(fds)
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed above
                holder.kill()


class LineReader:
    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def message(self) -> Any:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return jsonio.loads(line)
