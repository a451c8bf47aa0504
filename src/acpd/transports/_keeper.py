"""Transports layer: the keeper, a small process between the daemon and one agent or command
(Linux only).

Run as a script, ``python -I -S _keeper.py DAEMON_PID REPORT_FD TERM_GRACE [--linger] PROGRAM
[ARGS...]``: it imports only the stdlib and nothing of acpd, so it starts in about 15 ms. It must
never read or write the program's stdio: the program inherits stdin, stdout and stderr directly,
and the keeper lets go of its own copies.

Why it exists: an agent's descendants may leave its process group and session (codex-acp runs
commands under ``setsid``), so once the agent or the daemon dies nothing links them to anyone.
The keeper is a *child subreaper* (orphans below it are re-parented to it, not to init) and asks
the kernel for SIGTERM when the daemon dies (``PR_SET_PDEATHSIG``). So the whole tree stays
findable under the keeper, and it is stopped when the program exits, when the daemon signals, and
when the daemon is killed outright.

The program is told too (SIGTERM) when the keeper itself dies. The keeper tells the daemon whether
the program started through ``REPORT_FD``: ``ok``, or ``errno:message`` when it could not be
executed (anything else, an empty pipe included, is a failure). It exits with the program's status,
and dies by the program's signal when the program did.

With ``--linger`` (a terminal's command): the start report is the line ``ok\n``; when the program
exits, its wait status (a decimal number) follows on ``REPORT_FD``, and what it left running (a
background job) runs on below the keeper until it ends or the keeper is signalled; the keeper
exits after the last of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time
from typing import Final

PR_SET_PDEATHSIG: Final = 1
PR_SET_CHILD_SUBREAPER: Final = 36
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WAIT_SIGNALS: Final = {*STOP_SIGNALS, signal.SIGCHLD}
IDLE_WAKE_SECONDS: Final = 1.0
"""How often an idle keeper wakes (a lost SIGCHLD is recovered at the next wake)."""
KILL_RETRY_SECONDS: Final = 1.0
"""After SIGKILL, how long before the tree is signalled again (a child forked meanwhile)."""
EXIT_USAGE: Final = 2
EXIT_SPAWN_FAILED: Final = 127
OK: Final = b"ok"
LINGER: Final = "--linger"
"""Before the program: when it exits, report its status and let what it started run on (terminals)."""


def main(args: list[str]) -> int:
    if len(args) < 4 or not (args[0].isdigit() and args[1].isdigit()):
        sys.stderr.write(f"usage: _keeper.py DAEMON_PID REPORT_FD TERM_GRACE [{LINGER}] PROGRAM [ARGS...]\n")
        return EXIT_USAGE
    daemon, report, grace, argv = int(args[0]), int(args[1]), float(args[2]), args[3:]
    linger = argv[0] == LINGER
    argv = argv[1:] if linger else argv
    os.set_inheritable(report, False)  # the agent must not hold it, or the daemon waits for its exit
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != daemon:
        return EXIT_SPAWN_FAILED  # the daemon died before the death signal was armed
    # Signals are taken synchronously with sigtimedwait; the agent must start with none blocked.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAIT_SIGNALS)
    try:
        agent = _spawn(libc, argv)
    except OSError as exc:
        os.write(report, f"{exc.errno or 0}:{exc.strerror or exc}".encode())
        return EXIT_SPAWN_FAILED
    else:
        os.write(report, OK + b"\n" if linger else OK)
    finally:
        if not linger:
            os.close(report)
    _release_stdio(linger)
    return _finish(_supervise(agent, grace, report if linger else None))


def _spawn(libc: ctypes.CDLL, argv: list[str]) -> int:
    """Fork and exec the agent; raise the exec's error here, in the keeper.

    Not posix_spawn: the child must arm its own death signal (the keeper may be killed too), and
    every signal disposition must be reset (Python ignores SIGPIPE and SIGXFSZ, and an exec keeps
    what is ignored).
    """
    keeper = os.getpid()
    failed, tell = os.pipe2(os.O_CLOEXEC)  # closed by a successful exec: EOF means it ran
    pid = os.fork()
    if pid == 0:
        os.close(failed)
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != keeper:
                os._exit(EXIT_SPAWN_FAILED)
            for signum in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            os.execv(argv[0], argv)
        except OSError as exc:
            os.write(tell, f"{exc.errno or 0}:{exc.strerror or exc}".encode())
        os._exit(EXIT_SPAWN_FAILED)
    os.close(tell)
    with os.fdopen(failed, "rb") as reader:
        error = reader.read()
    if error:
        os.waitpid(pid, 0)
        number, _, message = error.decode("utf-8", "replace").partition(":")
        raise OSError(int(number) if number.isdigit() else 0, message)
    return pid


def _release_stdio(linger: bool) -> None:
    # Holding the agent's stdout would hide its exit from the daemon (no EOF) and holding stdin
    # would hide the daemon's close from the agent. Stderr stays, for the keeper to report there,
    # unless it lingers: its output pipe would then stay open after the command's end.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if linger:
        os.dup2(null, 2)
    os.close(null)


def _supervise(agent: int, grace: float, exit_report: int | None) -> int:
    """Wait for the agent, stop what it leaves behind, and return its wait status.

    ``exit_report`` (lingering): what the agent leaves behind runs on, contained, until it ends or
    the keeper is signalled; the agent's wait status is written there when it exits.
    """
    status: int | None = None
    deadline: float | None = None  # set once stopping: when SIGKILL follows SIGTERM
    while True:
        for pid, code in _reap():
            if pid == agent:
                status = code
                if exit_report is not None:
                    _report_exit(exit_report, code)
        if status is not None and deadline is None and exit_report is None:
            deadline = _stop_all(signal.SIGTERM, grace)
        if status is not None and not _children():
            return status
        timeout = IDLE_WAKE_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and timeout == 0.0:
            _signal_descendants(signal.SIGKILL)
            deadline = time.monotonic() + KILL_RETRY_SECONDS
            continue
        info = signal.sigtimedwait(WAIT_SIGNALS, timeout)
        if info is not None and info.si_signo != signal.SIGCHLD and deadline is None:
            deadline = _stop_all(info.si_signo, grace)


def _report_exit(fd: int, status: int) -> None:
    with contextlib.suppress(OSError):  # the daemon stopped listening: nobody to tell
        os.write(fd, str(status).encode())
    with contextlib.suppress(OSError):
        os.close(fd)


def _stop_all(signum: int, grace: float) -> float:
    _signal_descendants(signum)
    return time.monotonic() + grace


def _reap() -> list[tuple[int, int]]:
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, code))


def _children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _signal_descendants(signum: int) -> None:
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or the pid was reused
            os.kill(pid, signum)


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in parents.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def _finish(status: int) -> int:
    if os.WIFSIGNALED(status):
        # Die the same way, so the daemon sees the agent's signal as this process's own.
        signum = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the agent's crash is not the keeper's core
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no disposition to reset
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
        return 128 + signum  # only reached for a signal whose default action is not to terminate
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
