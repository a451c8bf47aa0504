"""The keeper (Linux): nothing an agent started outlives a cancelled turn's command or the daemon.

Every program runs under a warden forked by the daemon's one spawn server (``_spawner.py``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from acpd.protocol import jsonio
from acpd.transports import contained
from acpd.transports.contained import CAN_KEEP, open_contained, open_lingering, spawn_server_pid
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
MANY_HOLDER = Path(__file__).parent / "fixtures" / "many_holder.py"
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


async def test_killing_the_daemon_outright_leaves_no_server_warden_agent_or_double_forked_grandchild() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(MANY_HOLDER), "3", "double_fork", "ignore-term"]
    async with await anyio.open_process(command, stdout=subprocess.PIPE, env=env, cwd=ROOT) as holder:
        assert holder.stdout is not None
        lines = LineReader(holder.stdout)
        try:
            with anyio.fail_after(10):
                started = await lines.message()
                grandchildren = [(await lines.message())["grandchild"] for _ in range(3)]
            below = descendants(holder.pid)
            assert {started["server"], *started["wardens"], *grandchildren} <= set(below)
            assert all(parent_of(warden) == started["server"] for warden in started["wardens"])
            with pidfds(below, missing_ok=True) as fds:
                holder.send_signal(signal.SIGKILL)
                # The grandchildren ignore SIGTERM: their wardens' SIGKILL follows the grace.
                with anyio.fail_after(TERM_GRACE_SECONDS + 3):
                    await wait_all_ended(fds)
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed above
                holder.kill()


async def test_stopping_a_program_stops_its_whole_tree_even_what_left_its_session() -> None:
    command = [sys.executable, str(AGENT), "double_fork"]
    process = await open_contained(command, term_grace_seconds=1.0, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(5):
            grandchild = jsonio.loads(await process.stdout.receive())["grandchild"]
        below = descendants(process.pid)
        assert grandchild in below
        with pidfds(below) as fds:
            process.terminate()
            with anyio.fail_after(5):
                assert await process.wait() == -signal.SIGTERM
                await wait_all_ended(fds)


async def test_many_programs_share_one_spawn_server_and_no_daemon_thread_each() -> None:
    threads = threading.active_count()
    async with contextlib.AsyncExitStack() as stack:
        processes = []
        for _ in range(8):
            process = await open_contained(["/bin/cat"], term_grace_seconds=1.0, stdin=subprocess.PIPE)
            processes.append(await stack.enter_async_context(process))
        server = spawn_server_pid()
        assert server is not None
        assert {parent_of(process.pid) for process in processes} == {server}
        assert threading.active_count() == threads
        for process in processes:
            assert process.stdin is not None
            await process.stdin.aclose()  # cat exits at the end of its input
        with anyio.fail_after(5):
            assert [await process.wait() for process in processes] == [0] * 8


@pytest.mark.parametrize(
    ("script", "returncode"),
    [("exit 3", 3), ("exit 0", 0), ("kill -KILL $$", -signal.SIGKILL), ("kill -TERM $$", -signal.SIGTERM)],
)
async def test_a_programs_exit_code_or_signal_is_reported_as_its_own(script: str, returncode: int) -> None:
    async with await open_contained(["/bin/sh", "-c", script], term_grace_seconds=1.0) as process:
        with anyio.fail_after(5):
            assert await process.wait() == returncode


async def test_a_lingering_commands_exit_is_reported_while_its_background_job_runs_on_until_stopped() -> None:
    started = await open_lingering(
        ["/bin/sh", "-c", "sleep 30 & echo $!; exit 4"], term_grace_seconds=1.0, stdout=subprocess.PIPE
    )
    async with started.process as process:
        assert process.stdout is not None
        with anyio.fail_after(5):
            job = int(await process.stdout.receive())
            assert await started.command_exit() == 4
        assert is_running(job) and process.returncode is None
        with pidfds([job]) as fds:
            process.terminate()
            with anyio.fail_after(5):
                await process.wait()
                await wait_all_ended(fds)
    started.close()


async def test_a_dead_spawn_server_takes_its_programs_along_and_the_next_spawn_starts_a_new_one() -> None:
    process = await open_contained(["/bin/cat"], term_grace_seconds=1.0, stdin=subprocess.PIPE)
    async with process:
        server = spawn_server_pid()
        assert server is not None
        os.kill(server, signal.SIGKILL)
        with anyio.fail_after(5):
            await process.wait()
    async with await open_contained(["/bin/sh", "-c", "exit 5"], term_grace_seconds=1.0) as again:
        assert spawn_server_pid() not in (None, server)
        with anyio.fail_after(5):
            assert await again.wait() == 5


async def test_the_spawn_server_inherits_none_of_the_daemons_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    contained._server.close()  # the next spawn starts one with today's environment
    monkeypatch.setenv("ACPD_TEST_SECRET", "not-for-the-server")
    command = ["/bin/sh", "-c", 'echo "$ACPD_TEST_SECRET"']
    async with await open_contained(command, term_grace_seconds=1.0, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        with anyio.fail_after(5):
            assert await process.stdout.receive() == b"not-for-the-server\n"  # the program gets it
        server = spawn_server_pid()
        assert server is not None
        environ = (await anyio.Path(f"/proc/{server}/environ").read_bytes()).split(b"\0")
        assert all(entry.startswith(b"COVERAGE_") for entry in environ if entry)


async def test_a_program_that_cannot_be_executed_is_an_os_error_with_execs_own_reason(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await open_contained([str(tmp_path / "missing")], term_grace_seconds=1.0)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        await open_contained(["/bin/true"], term_grace_seconds=1.0, cwd=str(tmp_path / "file"))


async def test_an_unknown_option_is_refused_before_anything_starts() -> None:
    with pytest.raises(TypeError, match="shell"):
        await open_contained(["/bin/true"], term_grace_seconds=1.0, shell=True)
    with pytest.raises(ValueError, match="null"):
        await open_contained(["/bin/echo", "a\0b"], term_grace_seconds=1.0)


def descendants(pid: int) -> list[int]:
    from tests.processes import descendants as below

    return below(pid)


async def test_kill_stops_the_whole_tree_at_once_even_what_ignores_sigterm() -> None:
    command = [sys.executable, str(AGENT), "double_fork", "ignore-term"]
    process = await open_contained(command, term_grace_seconds=60.0, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(5):
            grandchild = jsonio.loads(await process.stdout.receive())["grandchild"]
        with pidfds(descendants(process.pid)) as fds:
            process.kill()
            with anyio.fail_after(5):  # far inside the 60 s of grace: no SIGTERM first
                assert await process.wait() == -signal.SIGKILL
                await wait_all_ended(fds)
        assert not is_running(grandchild)


async def test_a_start_cancelled_while_the_program_already_runs_stops_it_before_the_cancel_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = tmp_path / "started"
    os.mkfifo(started)
    gate = anyio.Event()  # never set: the first wait for the warden's report hangs until cancelled
    receive_start = contained._receive_start

    async def held_once(sock: Any) -> tuple[bytes, list[int]]:
        monkeypatch.setattr(contained, "_receive_start", receive_start)
        await gate.wait()
        raise AssertionError("the gate opened")

    monkeypatch.setattr(contained, "_receive_start", held_once)
    # ignore-term: a SIGTERM with grace would leave it running for the whole minute
    script = f"echo $$ > {started}; trap '' TERM; exec sleep 60"
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: open_contained(["sh", "-c", script], term_grace_seconds=60.0))
            pid = int(await anyio.to_thread.run_sync(started.read_text))  # running, its report unread
            tg.cancel_scope.cancel()
    assert not is_running(pid)
