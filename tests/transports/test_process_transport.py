"""ProcessTransport against real child processes (tests/transports/fixtures/process_agent.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from acpd.errors import AgentUnavailable, ConnectionClosed
from acpd.protocol import jsonio
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.transports import Transport
from acpd.transports.process import (
    STDERR_BYTES_PER_SECOND,
    STDERR_TAIL_BYTES,
    STDIN_CLOSE_GRACE_SECONDS,
    TERM_GRACE_SECONDS,
    ByteRate,
    ProcessSpec,
    ProcessTransport,
    open_process_transport,
)
from tests.processes import pidfds, wait_all_ended

pytestmark = pytest.mark.anyio

AGENT = Path(__file__).parent / "fixtures" / "process_agent.py"
LADDER_BOUND_SECONDS = STDIN_CLOSE_GRACE_SECONDS + TERM_GRACE_SECONDS + 1.0

OpenAgent = Callable[..., AbstractAsyncContextManager[ProcessTransport]]


def agent_spec(*args: str, **kwargs: Any) -> ProcessSpec:
    return ProcessSpec(sys.executable, [str(AGENT), *args], **kwargs)


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphaned zombie waits for init, not for us)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def running_in_session(session: int) -> list[int]:
    return [
        int(name)
        for name in os.listdir("/proc")
        if name.isdigit()
        and (fields := _stat_fields(int(name)))
        and int(fields[3]) == session
        and is_running(int(name))
    ]


def messages_of(frames: list[Frame]) -> list[Any]:
    assert all(isinstance(frame, bytes) for frame in frames), frames
    return [jsonio.loads(frame) for frame in frames if isinstance(frame, bytes)]


async def receive_until(transport: ProcessTransport, done: Callable[[list[Frame]], bool]) -> list[Frame]:
    frames: list[Frame] = []
    while not done(frames):
        frames += await transport.receive()
    return frames


async def receive_all(transport: ProcessTransport) -> list[Frame]:
    frames: list[Frame] = []
    while True:
        try:
            frames += await transport.receive()
        except anyio.EndOfStream:
            return frames


@pytest.fixture
def open_agent() -> Iterator[OpenAgent]:
    """Opens the fixture agent; afterwards, nothing may still run in any of the agents' sessions."""
    sessions: list[int] = []

    @asynccontextmanager
    async def open_(*args: str, keeper: bool = True, **kwargs: Any) -> AsyncIterator[ProcessTransport]:
        async with open_process_transport(agent_spec(*args, keeper=keeper), **kwargs) as transport:
            sessions.append(transport.pid)
            yield transport

    yield open_
    assert [pid for session in sessions for pid in running_in_session(session)] == []


async def test_frames_round_trip_through_an_echo_agent(open_agent: OpenAgent) -> None:
    messages = [{"jsonrpc": "2.0", "id": n, "method": "ping", "params": {"text": "é\u2028"}} for n in range(3)]
    with anyio.fail_after(5):
        async with open_agent("echo") as agent:
            transport: Transport = agent  # mypy checks the Protocol
            for message in messages:
                await transport.send(jsonio.dumps(message))
            frames = await receive_until(agent, lambda got: len(got) == len(messages))
    assert messages_of(frames) == messages


async def test_concurrent_senders_never_interleave_lines(open_agent: OpenAgent) -> None:
    senders, per_sender = 20, 100

    async def send_many(agent: ProcessTransport, sender: int) -> None:
        for n in range(per_sender):
            await agent.send(jsonio.dumps({"sender": sender, "n": n, "pad": "x" * 500}))

    frames: list[Frame] = []

    async def receive_echoes(agent: ProcessTransport) -> None:
        # Read while sending: an echo agent blocks on its stdout pipe once ours fills up.
        frames.extend(await receive_until(agent, lambda got: len(got) == senders * per_sender))

    with anyio.fail_after(5):
        async with open_agent("echo") as agent, anyio.create_task_group() as tg:
            tg.start_soon(receive_echoes, agent)
            for sender in range(senders):
                tg.start_soon(send_many, agent, sender)
    received = messages_of(frames)
    for sender in range(senders):
        assert [m["n"] for m in received if m["sender"] == sender] == list(range(per_sender))


async def test_a_flood_of_100k_lines_arrives_in_order_in_batches(
    open_agent: OpenAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, calls, reads = 100_000, 0, 0
    read = ProcessTransport._read_stdout

    async def counted(transport: ProcessTransport) -> bytes:
        nonlocal reads
        reads += 1
        return await read(transport)

    monkeypatch.setattr(ProcessTransport, "_read_stdout", counted)
    frames: list[Frame] = []
    with anyio.fail_after(5):
        async with open_agent("flood", str(count)) as agent:
            while True:
                try:
                    frames += await agent.receive()
                except anyio.EndOfStream:
                    break
                calls += 1
    assert frames == [b'{"n":%d}' % n for n in range(count)]
    # every line a read of the pipe brought is handed over at once, however the machine's load
    # cut the flood into reads (a count of calls alone depended on that)
    assert calls <= reads < count


async def test_megabytes_of_stderr_are_drained_and_the_tail_is_kept(open_agent: OpenAgent) -> None:
    size = 3 * 1024 * 1024
    seen = bytearray()
    with anyio.fail_after(5):
        async with open_agent("chatty", str(size), on_stderr=seen.extend) as agent:
            assert await agent.receive() == [b'{"done":true}']
    tail = agent.stderr_tail()
    assert tail.endswith("x\nstderr-end\n")
    assert len(tail.encode()) == STDERR_TAIL_BYTES
    assert len(seen) == size // 1024 * 1024 + len("stderr-end\n")


async def test_a_failing_stderr_observer_does_not_stop_the_draining(
    open_agent: OpenAgent, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(chunk: bytes) -> None:
        raise RuntimeError("observer bug")

    with anyio.fail_after(5):
        async with open_agent("chatty", str(1024 * 1024), on_stderr=explode) as agent:
            assert await agent.receive() == [b'{"done":true}']
    assert "on_stderr callback failed" in caplog.text


async def test_the_last_unterminated_line_is_delivered_before_end_of_stream(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5):
        async with open_agent("unterminated") as agent:
            assert await receive_all(agent) == [b'{"a":1}', b'{"last":true}']
            assert await agent.wait() == 3
            assert agent.exited.is_set()
            assert agent.returncode == 3
            with pytest.raises(anyio.EndOfStream):
                await agent.receive()


async def test_lines_over_the_limit_arrive_as_frame_too_long(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5):
        async with open_agent("echo", max_line_bytes=64) as agent:
            await agent.send(b'"' + b"y" * 100 + b'"')
            await agent.send(b"{}")
            assert await receive_until(agent, lambda got: len(got) == 2) == [FrameTooLong(102), b"{}"]


async def test_send_after_the_agent_exited_raises_connection_closed(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5):
        async with open_agent("unterminated") as agent:
            await agent.wait()
            await agent.exited.wait()
            with pytest.raises(ConnectionClosed):
                await agent.send(b"{}")


async def test_send_after_aclose_raises_connection_closed_and_receive_ends(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5):
        async with open_agent("echo") as agent:
            await agent.aclose()
            with pytest.raises(ConnectionClosed):
                await agent.send(b"{}")
            with pytest.raises(anyio.EndOfStream):
                await agent.receive()


async def test_an_agent_that_exits_on_stdin_eof_is_never_signalled(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5):
        async with open_agent("echo") as agent:
            await agent.aclose()
    assert agent.returncode == 0


async def test_aclose_is_idempotent_and_concurrent_callers_all_return(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5):
        async with open_agent("echo") as agent, anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(agent.aclose)
        await agent.aclose()
    assert agent.returncode == 0


async def test_an_agent_ignoring_stdin_eof_and_sigterm_is_killed_within_the_ladder(open_agent: OpenAgent) -> None:
    async with open_agent("stubborn") as agent:
        with anyio.fail_after(5):
            assert await agent.receive() == [b'{"ready":true}']
        with anyio.fail_after(LADDER_BOUND_SECONDS):
            await agent.aclose()
    assert agent.returncode == -signal.SIGKILL


async def test_a_setsid_grandchild_of_a_running_agent_is_killed_with_it(open_agent: OpenAgent) -> None:
    async with open_agent("grandchild", "stubborn", "ignore-term") as agent:
        with anyio.fail_after(5):
            frames = await receive_until(agent, lambda got: len(got) == 2)
        grandchild = next(m["grandchild"] for m in messages_of(frames) if "grandchild" in m)
        assert is_running(grandchild)
        with pidfds([grandchild]) as fds:
            with anyio.fail_after(LADDER_BOUND_SECONDS):
                await agent.aclose()
            await wait_all_ended(fds)


async def test_a_setsid_grandchild_left_behind_by_an_exiting_agent_is_killed(open_agent: OpenAgent) -> None:
    # The agent exits as soon as its stdin closes; only what was collected before that links
    # the grandchild (now in its own session, re-parented) to it.
    async with open_agent("grandchild", "echo") as agent:
        with anyio.fail_after(5):
            [message] = messages_of(await agent.receive())
        assert message["session"] == message["grandchild"] != agent.pid
        with pidfds([message["grandchild"]]) as fds:
            with anyio.fail_after(LADDER_BOUND_SECONDS):
                await agent.aclose()
            assert agent.returncode == 0
            await wait_all_ended(fds)


async def test_a_child_orphaned_in_the_agents_session_is_gone_once_the_kept_agent_has_exited(
    open_agent: OpenAgent,
) -> None:
    async with open_agent("orphan") as agent:
        with anyio.fail_after(5):
            [message] = messages_of(await agent.receive())
            # The keeper reports the agent's exit only after stopping what the agent left behind.
            assert await agent.wait() == 0
        assert not is_running(message["child"])


async def test_without_a_keeper_a_child_orphaned_in_the_agents_session_is_killed_at_close(
    open_agent: OpenAgent,
) -> None:
    async with open_agent("orphan", keeper=False) as agent:
        with anyio.fail_after(5):
            [message] = messages_of(await agent.receive())
            assert await agent.wait() == 0
        assert message["session"] == agent.pid
        assert is_running(message["child"])
        with pidfds([message["child"]]) as fds:
            with anyio.fail_after(LADDER_BOUND_SECONDS):
                await agent.aclose()
            await wait_all_ended(fds)


async def test_an_error_inside_the_context_propagates_unwrapped_and_the_agent_is_stopped(
    open_agent: OpenAgent,
) -> None:
    with anyio.fail_after(5), pytest.raises(ConnectionClosed, match="from the caller"):
        async with open_agent("echo") as agent:
            raise ConnectionClosed("from the caller")
    assert agent.returncode == 0


async def test_a_missing_command_raises_agent_unavailable_naming_it() -> None:
    with pytest.raises(AgentUnavailable, match="no-such-agent-acpd"):
        async with open_process_transport(ProcessSpec("no-such-agent-acpd")):
            pass


async def test_a_file_without_execute_permission_raises_agent_unavailable(tmp_path: Path) -> None:
    script = tmp_path / "agent"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(AgentUnavailable, match="not executable"):
        async with open_process_transport(ProcessSpec("./agent", cwd=str(tmp_path))):
            pass


async def test_a_script_with_a_broken_interpreter_raises_agent_unavailable(tmp_path: Path) -> None:
    script = tmp_path / "agent"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(AgentUnavailable, match="cannot start agent command"):
        async with open_process_transport(ProcessSpec(str(script))):
            pass


async def test_the_command_is_looked_up_on_the_specs_path_and_gets_its_env_and_cwd(tmp_path: Path) -> None:
    bin_dir, work_dir = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work_dir.mkdir()
    launcher = bin_dir / "acpd-test-agent"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{AGENT}" report\n')
    launcher.chmod(0o755)
    spec = ProcessSpec("acpd-test-agent", env={"PATH": str(bin_dir), "ACPD_TEST_VALUE": "42"}, cwd=str(work_dir))
    with anyio.fail_after(5):
        async with open_process_transport(spec) as agent:
            assert messages_of(await agent.receive()) == [{"cwd": str(work_dir), "value": "42"}]


async def test_cancelling_the_owner_still_stops_and_reaps_the_agent(open_agent: OpenAgent) -> None:
    with anyio.fail_after(5), anyio.CancelScope() as owner:
        async with open_agent("echo") as agent:
            owner.cancel()
            await anyio.sleep_forever()
    assert agent.returncode == 0
    assert agent.exited.is_set()


async def test_a_relative_command_path_is_taken_relative_to_the_specs_cwd(tmp_path: Path) -> None:
    launcher = tmp_path / "agent"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{AGENT}" report\n')
    launcher.chmod(0o755)
    with anyio.fail_after(5):
        async with open_process_transport(ProcessSpec("./agent", cwd=str(tmp_path))) as agent:
            assert messages_of(await agent.receive()) == [{"cwd": str(tmp_path), "value": None}]


async def test_without_a_stdin_grace_an_agent_that_ignores_eof_is_terminated_at_once() -> None:
    async with open_process_transport(agent_spec("linger", stdin_close_grace_seconds=0.0)) as agent:
        with anyio.fail_after(5):
            await agent.receive()
            await agent.aclose()
    assert agent.returncode == -signal.SIGTERM


def test_a_byte_rate_lets_a_seconds_worth_through_then_says_how_long_to_wait() -> None:
    now = [10.0]
    rate = ByteRate(1000, lambda: now[0])
    assert rate.spend(600) == 0.0
    now[0] = 10.25
    assert rate.spend(600) == pytest.approx(0.75)  # over budget a quarter into the second
    now[0] = 11.0  # the reader waited: a new second's worth
    assert rate.spend(999) == 0.0
    now[0] = 12.5  # a quiet second and a half later: the budget is whole again
    assert rate.spend(999) == 0.0


async def test_a_stderr_flood_is_read_at_a_bounded_rate_and_its_tail_kept() -> None:
    size = STDERR_BYTES_PER_SECOND * 2
    spec = ProcessSpec(sys.executable, ["-c", f"import os\nos.write(2, b'x' * {size} + b'\\nflood-end\\n')"])
    with anyio.fail_after(10):
        async with open_process_transport(spec) as agent:
            started = anyio.current_time()
            await agent.wait()
            await agent._stderr_done.wait()
            took = anyio.current_time() - started
    assert agent.stderr_tail().endswith("x\nflood-end\n")
    assert took >= 1.0  # two seconds' worth: the reader paused once
