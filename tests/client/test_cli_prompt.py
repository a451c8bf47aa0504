"""``acpd prompt`` shows a turn's permission requests on a terminal and answers them as told, or
decides them by ``--approve``; its exit code says how the turn ended. Driven as a user would:
through a pseudo-terminal, or as a script with no terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import anyio
import pytest

from acpd.testing.daemon import Daemon, daemon_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

WAIT_SECONDS = 60.0


def _take_terminal() -> None:
    """In the child, in its new session: make stdin (the pseudo-terminal) its controlling
    terminal, so that typing Ctrl-C sends it SIGINT as a real terminal does, and give SIGINT its
    default action, as a shell does for the job in its foreground. Whoever runs the tests may
    ignore SIGINT (a job started with ``&`` by a shell without job control, as CI runners do), and
    an ignored signal stays ignored across exec: Python then never raises KeyboardInterrupt."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """``acpd prompt …`` on a pseudo-terminal: what it wrote so far, and a way to type."""

    def __init__(self, home: Path, daemon: Daemon, *words: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "acpd", "prompt", "--url", daemon.url, *words],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=daemon_env(home),
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, needle: str) -> str:
        """Everything written until ``needle`` shows (bounded by ``WAIT_SECONDS``)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while needle not in self.seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"{needle!r} never showed; the terminal shows:\n{self.seen}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the command exited and the terminal closed
                chunk = b""
            if not chunk:
                raise AssertionError(f"{needle!r} never showed before the end; the terminal shows:\n{self.seen}")
            self.seen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.seen

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def exit_code(self) -> int:
        """The command's exit code, the terminal read meanwhile as its user's would be: a
        terminal nobody reads fills up, and the command's next write (``[cancelled]``, a
        warning at exit) would wait for it forever."""
        deadline = time.monotonic() + WAIT_SECONDS
        while self.process.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the command did not exit; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the command exited and the terminal closed
                    chunk = b""
                self.seen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.process.wait()

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:  # a failed test: stop what it started
            self.process.kill()
            self.process.wait(timeout=WAIT_SECONDS)
        os.close(self.master)


async def test_a_permission_request_is_shown_on_the_terminal_and_answered_once_finishes_the_turn(
    tmp_path: Path, daemon: Daemon, workdir: Path
) -> None:
    with Terminal(tmp_path, daemon, "--cwd", str(workdir), "permission edit") as terminal:
        shown = await anyio.to_thread.run_sync(terminal.read_until, "allow? [o]nce / [a]lways / [r]eject: ")
        assert "[permission p" in shown
        assert "Mock edit needing permission (edit)" in shown
        terminal.type("once\n")
        finished = await anyio.to_thread.run_sync(terminal.read_until, "[end_turn]")
        assert "permission: allow" in finished
        assert await anyio.to_thread.run_sync(terminal.exit_code) == 0


@pytest.mark.parametrize("runner_ignores_sigint", [False, True])
async def test_ctrl_c_cancels_the_turn_on_the_daemon_and_exits_130(
    tmp_path: Path, daemon: Daemon, workdir: Path, runner_ignores_sigint: bool
) -> None:
    # A runner that ignores SIGINT (a CI job started with ``&``) passes that on to what it starts:
    # the terminal's Ctrl-C must still reach the command, as a shell's foreground job.
    previous = signal.getsignal(signal.SIGINT)
    if runner_ignores_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        terminal = Terminal(tmp_path, daemon, "--cwd", str(workdir), "text working\nsleep 60")
    finally:
        signal.signal(signal.SIGINT, previous)
    with terminal:
        shown = await anyio.to_thread.run_sync(terminal.read_until, "working")
        session_id = shown.split("[session ", 1)[1].split("]", 1)[0]
        terminal.type("\x03")  # the terminal's interrupt character: SIGINT to the command
        assert await anyio.to_thread.run_sync(terminal.exit_code) == 130
    async with daemon.client(timeout=WAIT_SECONDS) as http:
        with anyio.fail_after(WAIT_SECONDS):
            answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text next"})
        events = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    assert answer.json()["stopReason"] == "end_turn"  # the cancelled turn did not hold the session
    stops = [
        e["payload"]["result"].get("stopReason") for e in events if "stopReason" in str(e["payload"].get("result"))
    ]
    assert stops == ["cancelled", "end_turn"]


def run_script(home: Path, daemon: Daemon, *words: str) -> subprocess.CompletedProcess[str]:
    """``acpd prompt`` as a script runs it: no terminal anywhere."""
    return subprocess.run(
        [sys.executable, "-m", "acpd", "prompt", "--url", daemon.url, *words],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=daemon_env(home),
        timeout=WAIT_SECONDS,
    )


@pytest.mark.parametrize(
    ("words", "code", "says"),
    [
        (("--approve", "all", "permission edit"), 0, "permission: allow"),
        (("--approve", "reads", "permission read"), 0, "permission: allow"),
        (("--approve", "reads", "permission edit"), 5, "permission: reject"),
        (("permission edit",), 5, "permission: reject"),  # no terminal: nothing is allowed unasked
        (("text half\nstop max_tokens",), 3, "half"),
        (("text no\nstop refusal",), 3, "no"),
        (("--session", "no-such-session", "hello"), 4, ""),
        (("--approve", "ask", "permission edit"), 2, ""),
    ],
)
async def test_a_script_gets_an_exit_code_that_says_how_the_turn_ended(
    tmp_path: Path, daemon: Daemon, workdir: Path, words: tuple[str, ...], code: int, says: str
) -> None:
    done = await anyio.to_thread.run_sync(lambda: run_script(tmp_path, daemon, "--cwd", str(workdir), *words))
    assert done.returncode == code, done.stderr
    assert says in done.stdout
    if code in (2, 4):
        assert done.stderr.startswith("acpd: ") and "Traceback" not in done.stderr
