"""Terminals: commands run in the workspace, output retained and truncated, process groups killed."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketListener

from acpd.adapters import terminals
from acpd.adapters.terminals import MAX_TERMINALS, TerminalManager, open_terminal_manager
from acpd.adapters.workspace import Workspace
from acpd.errors import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, RpcError
from acpd.transports import contained
from acpd.transports.contained import CAN_KEEP
from tests.processes import cmdlines, pidfds, wait_all_ended

pytestmark = pytest.mark.anyio

# Started as the terminal's command: reports its pid (and its child's) on a Unix socket once it
# is ready, so a test knows when to act without sleeping, then waits to be killed.
REPORTER = """
import os, signal, socket, subprocess, sys, time
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = [os.getpid()]
if "--grandchild" in sys.argv:
    pids.append(subprocess.Popen(["sleep", "60"]).pid)
if "--escaped-grandchild" in sys.argv:  # its own session, deaf to SIGTERM: only the keeper finds it
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    pids.append(subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True).pid)
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(sys.argv[1])
    sock.sendall(" ".join(map(str, pids)).encode())
time.sleep(60)
"""


@pytest.fixture
async def manager(workspace: Workspace) -> AsyncIterator[TerminalManager]:
    async with open_terminal_manager(workspace) as manager:
        yield manager


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[SocketListener]:
    async with await anyio.create_unix_listener(tmp_path / "report.sock") as listener:
        yield listener


async def start_reporter(manager: TerminalManager, listener: SocketListener, *flags: str) -> tuple[str, list[int]]:
    socket_path = str(listener.extra(anyio.abc.SocketAttribute.local_address))
    terminal_id = await manager.create(sys.executable, ["-c", REPORTER, socket_path, *flags])
    with anyio.fail_after(5):
        async with await listener.accept() as stream:
            data = b""
            async for chunk in stream:
                data += chunk
    return terminal_id, [int(pid) for pid in data.split()]


async def test_output_and_exit_code_are_captured(manager: TerminalManager) -> None:
    terminal_id = await manager.create("echo out; echo err >&2; exit 3")
    with anyio.fail_after(5):
        status = await manager.wait_for_exit(terminal_id)
    assert status == {"exitCode": 3, "signal": None}
    assert await manager.output(terminal_id) == ("out\nerr\n", False, status)


async def test_args_are_appended_shell_quoted(manager: TerminalManager) -> None:
    terminal_id = await manager.create("printf", ["%s|", "a b", "$HOME", "it's"])
    with anyio.fail_after(5):
        await manager.wait_for_exit(terminal_id)
    assert (await manager.output(terminal_id)).output == "a b|$HOME|it's|"


async def test_a_missing_command_exits_127_like_in_a_shell(manager: TerminalManager) -> None:
    terminal_id = await manager.create("acpd-no-such-command")
    with anyio.fail_after(5):
        assert await manager.wait_for_exit(terminal_id) == {"exitCode": 127, "signal": None}
    assert "not found" in (await manager.output(terminal_id)).output


async def test_output_is_truncated_from_the_start_at_a_character_boundary(manager: TerminalManager) -> None:
    # "a" then ten 3-byte euro signs: dropping 23 of 31 bytes would cut a euro sign in two.
    terminal_id = await manager.create("printf", ["%s", "a" + "€" * 10], output_byte_limit=8)
    with anyio.fail_after(5):
        await manager.wait_for_exit(terminal_id)
    output, truncated, _ = await manager.output(terminal_id)
    assert output == "€€"
    assert truncated is True


def test_a_character_split_across_reads_is_held_back_until_complete() -> None:
    buffer = terminals._OutputBuffer(100)
    buffer.append("ok €".encode()[:-1])
    assert buffer.text(final=False) == "ok "
    buffer.append("€".encode()[-1:])
    assert buffer.text(final=False) == "ok €"


async def test_kill_reports_the_signal_and_keeps_the_terminal(manager: TerminalManager) -> None:
    terminal_id = await manager.create("echo started; exec sleep 60")
    with anyio.fail_after(5):
        await manager.kill(terminal_id)
        status = await manager.wait_for_exit(terminal_id)
    assert status == {"exitCode": None, "signal": "SIGTERM"}
    assert (await manager.output(terminal_id)).exit_status == status


async def test_kill_escalates_to_sigkill_when_sigterm_is_ignored(
    manager: TerminalManager, listener: SocketListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminals, "TERM_GRACE_SECONDS", 0.2)
    terminal_id, _ = await start_reporter(manager, listener, "--ignore-term")
    with anyio.fail_after(5):
        await manager.kill(terminal_id)
        assert await manager.wait_for_exit(terminal_id) == {"exitCode": None, "signal": "SIGKILL"}


async def test_kill_stops_a_member_that_left_the_group_and_ignores_sigterm(
    manager: TerminalManager, listener: SocketListener
) -> None:
    terminal_id, pids = await start_reporter(manager, listener, "--escaped-grandchild")
    with pidfds(pids) as fds:
        with anyio.fail_after(5):
            await manager.kill(terminal_id)
            assert await manager.wait_for_exit(terminal_id) == {"exitCode": None, "signal": "SIGTERM"}
        await wait_all_ended(fds)


async def test_a_background_job_runs_on_after_its_command_exits_and_its_output_is_kept(
    manager: TerminalManager, listener: SocketListener
) -> None:
    socket_path = str(listener.extra(anyio.abc.SocketAttribute.local_address))
    job = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1); print('late')"
    terminal_id = await manager.create(f'({sys.executable} -c "{job}" {socket_path}) & echo early')
    with anyio.fail_after(5):
        assert await manager.wait_for_exit(terminal_id) == {"exitCode": 0, "signal": None}
        async with await listener.accept() as stream:  # the job still runs: tell it to go on
            await stream.send(b"x")
        # No API says when a background job's output has all been read: the terminal's own event does.
        await manager._terminals[terminal_id].drained.wait()
    assert (await manager.output(terminal_id)).output == "early\nlate\n"


@pytest.mark.skipif(not CAN_KEEP, reason="only the keeper's start has a moment to be cancelled in")
async def test_a_create_cancelled_while_the_command_starts_leaves_nothing_running(
    manager: TerminalManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"acpd-terminal-{uuid.uuid4().hex}"
    scope = anyio.CancelScope()
    take_start = contained._take_start

    def started_then_cancelled(message: bytes, fds: list[int]) -> tuple[int, int | None]:
        answer = take_start(message, fds)
        scope.cancel()  # the cancel lands as the warden's start report is read
        return answer

    monkeypatch.setattr(contained, "_take_start", started_then_cancelled)
    with scope:
        await manager.create(f"sleep 30 # {marker}")
    assert scope.cancelled_caught
    with pidfds([pid for pid, cmdline in cmdlines() if marker in cmdline], missing_ok=True) as fds:
        await wait_all_ended(fds)


async def test_release_kills_the_command_and_forgets_the_terminal(
    manager: TerminalManager, listener: SocketListener
) -> None:
    terminal_id, pids = await start_reporter(manager, listener)
    with pidfds(pids) as fds:
        await manager.release(terminal_id)
        await wait_all_ended(fds)
    with pytest.raises(RpcError) as caught:
        await manager.output(terminal_id)
    assert caught.value.code == INVALID_PARAMS


async def test_leaving_the_manager_kills_the_whole_process_group(
    workspace: Workspace, listener: SocketListener
) -> None:
    with ExitStack() as stack:
        async with open_terminal_manager(workspace) as manager:
            _, pids = await start_reporter(manager, listener, "--grandchild")
            fds = stack.enter_context(pidfds(pids))
        assert len(pids) == 2  # the command and its own child
        await wait_all_ended(fds)
    with pytest.raises(RpcError) as caught:
        await manager.create("true")
    assert caught.value.code == INTERNAL_ERROR


async def test_an_error_inside_the_manager_propagates_as_is_after_killing_the_terminals(
    workspace: Workspace, listener: SocketListener
) -> None:
    with ExitStack() as stack:
        with pytest.raises(LookupError, match="from the body"):
            async with open_terminal_manager(workspace) as manager:
                _, pids = await start_reporter(manager, listener)
                fds = stack.enter_context(pidfds(pids))
                raise LookupError("from the body")
        await wait_all_ended(fds)


async def test_cancelling_the_manager_from_outside_kills_the_terminals(
    workspace: Workspace, listener: SocketListener
) -> None:
    with ExitStack() as stack:
        with anyio.CancelScope() as scope:
            async with open_terminal_manager(workspace) as manager:
                terminal_id, pids = await start_reporter(manager, listener)
                fds = stack.enter_context(pidfds(pids))
                scope.cancel()
                await manager.wait_for_exit(terminal_id)
        assert scope.cancelled_caught
        await wait_all_ended(fds)


async def test_cwd_defaults_to_the_first_root_and_may_be_any_root(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    async with open_terminal_manager(Workspace([root, other])) as manager:
        default = await manager.create("pwd -P")
        explicit = await manager.create("pwd -P", cwd=str(other))
        with anyio.fail_after(5):
            await manager.wait_for_exit(default)
            await manager.wait_for_exit(explicit)
        assert (await manager.output(default)).output == f"{root}\n"
        assert (await manager.output(explicit)).output == f"{other.resolve()}\n"


@pytest.mark.parametrize("cwd", ["/", "relative/dir", "{root}/../.."])
async def test_a_cwd_outside_the_workspace_is_refused(manager: TerminalManager, root: Path, cwd: str) -> None:
    with pytest.raises(RpcError) as caught:
        await manager.create("pwd", cwd=cwd.format(root=root))
    assert caught.value.code == INVALID_PARAMS


async def test_env_variables_are_passed_on_top_of_the_manager_env(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACPD_TEST_DAEMON_ONLY", "leaked")
    base = {"PATH": os.environ["PATH"], "BASE": "base"}
    async with open_terminal_manager(workspace, env=base) as manager:
        terminal_id = await manager.create(
            'printf "%s|%s|%s" "$BASE" "$EXTRA" "$ACPD_TEST_DAEMON_ONLY"', env={"EXTRA": "x y"}
        )
        with anyio.fail_after(5):
            await manager.wait_for_exit(terminal_id)
        assert (await manager.output(terminal_id)).output == "base|x y|"


async def test_handle_serves_the_acp_terminal_methods(manager: TerminalManager) -> None:
    created = await manager.handle(
        "terminal/create",
        {
            "sessionId": "s",
            "command": 'printf "%s %s" "$GREETING"',
            "args": ["world"],
            "env": [{"name": "GREETING", "value": "hello"}],
            "cwd": None,
            "outputByteLimit": 1000,
        },
    )
    by_id = {"sessionId": "s", "terminalId": created["terminalId"]}
    with anyio.fail_after(5):
        exited = await manager.handle("terminal/wait_for_exit", by_id)
    output = await manager.handle("terminal/output", by_id)
    assert exited == {"exitCode": 0, "signal": None}
    assert output == {"output": "hello world", "truncated": False, "exitStatus": exited}
    assert await manager.handle("terminal/kill", by_id) == {}
    assert await manager.handle("terminal/release", by_id) == {}


async def test_output_of_a_running_command_has_no_exit_status(manager: TerminalManager) -> None:
    created = await manager.handle("terminal/create", {"sessionId": "s", "command": "exec sleep 60"})
    output = await manager.handle("terminal/output", {"sessionId": "s", "terminalId": created["terminalId"]})
    assert output == {"output": "", "truncated": False}


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("terminal/output", {"terminalId": "term_unknown"}, INVALID_PARAMS),
        ("terminal/release", {}, INVALID_PARAMS),
        ("terminal/create", {"command": "true", "env": [{"name": "A"}]}, INVALID_PARAMS),
        ("terminal/create", {"command": "true", "env": [{"name": "A=B", "value": ""}]}, INVALID_PARAMS),
        ("terminal/create", {"command": "true", "outputByteLimit": -1}, INVALID_PARAMS),
        ("terminal/create", {"command": ["true"]}, INVALID_PARAMS),
        ("terminal/create", {"command": " "}, INVALID_PARAMS),
        ("terminal/resize", {"terminalId": "term_unknown"}, METHOD_NOT_FOUND),
    ],
)
async def test_handle_refuses_bad_requests(
    manager: TerminalManager, method: str, params: dict[str, object], code: int
) -> None:
    with pytest.raises(RpcError) as caught:
        await manager.handle(method, params)
    assert caught.value.code == code


async def test_a_session_holds_a_bounded_number_of_terminals_until_it_releases_some(manager: TerminalManager) -> None:
    with anyio.fail_after(30):
        ids = [await manager.create("true") for _ in range(MAX_TERMINALS)]
        with pytest.raises(RpcError) as refused:
            await manager.create("true")
        assert refused.value.code == INVALID_PARAMS
        assert "release one" in refused.value.data["detail"]
        await manager.release(ids[0])
        assert await manager.create("true")
