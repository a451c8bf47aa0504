"""Transports layer: the keeper, a small process between the daemon and one agent (Linux only).

Run as a script, ``python -I -S _keeper.py REPORT_FD PROGRAM [ARGS...]``: it imports only the stdlib and nothing
of acpd, so it starts in about 15 ms. It must never read or write the agent's stdio: the agent
inherits stdin, stdout and stderr directly, and the keeper lets go of its own copies.

Why it exists: an agent's descendants may leave its process group and session (codex-acp runs
commands under ``setsid``), so once the agent or the daemon dies nothing links them to anyone.
The keeper is a *child subreaper* (orphans below it are re-parented to it, not to init) and asks
the kernel for SIGTERM when the daemon dies (``PR_SET_PDEATHSIG``). So the whole tree stays
findable under the keeper, and it is stopped when the agent exits, when the daemon signals, and
when the daemon is killed outright.

It tells the daemon whether the agent started through ``REPORT_FD``: closed empty on success,
``errno:message`` when the program could not be executed. It exits with the agent's status, and
dies by the agent's signal when the agent did.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TERM_GRACE_SECONDS = 2.0
"""After SIGTERM, how long the tree has before SIGKILL (the daemon's own ladder uses the same)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WAIT_SIGNALS = {*STOP_SIGNALS, signal.SIGCHLD}
EXIT_USAGE = 2
EXIT_SPAWN_FAILED = 127


def main(args: list[str]) -> int:
    if len(args) < 2 or not args[0].isdigit():
        sys.stderr.write("usage: _keeper.py REPORT_FD PROGRAM [ARGS...]\n")
        return EXIT_USAGE
    report, argv = int(args[0]), args[1:]
    os.set_inheritable(report, False)  # the agent must not hold it, or the daemon waits for its exit
    daemon = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != daemon:
        return EXIT_SPAWN_FAILED  # the daemon died before the death signal was armed
    # Signals are taken synchronously with sigtimedwait; the agent must start with none blocked.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAIT_SIGNALS)
    try:
        agent = os.posix_spawn(argv[0], argv, os.environ, setsigmask=(), setsigdef=WAIT_SIGNALS)
    except OSError as exc:
        os.write(report, f"{exc.errno or 0}:{exc.strerror or exc}".encode())
        return EXIT_SPAWN_FAILED
    finally:
        os.close(report)
    _release_stdio()
    return _finish(_supervise(agent))


def _release_stdio() -> None:
    # Holding the agent's stdout would hide its exit from the daemon (no EOF) and holding stdin
    # would hide the daemon's close from the agent. Stderr stays: the keeper may report there.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _supervise(agent: int) -> int:
    """Wait for the agent, stop what it leaves behind, and return its wait status."""
    status: int | None = None
    deadline: float | None = None  # set once stopping: when SIGKILL follows SIGTERM
    while True:
        for pid, code in _reap():
            if pid == agent:
                status = code
        if status is not None and deadline is None:
            deadline = _stop_all(signal.SIGTERM)
        if status is not None and not _children():
            return status
        timeout = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and timeout == 0.0:
            _signal_descendants(signal.SIGKILL)
            deadline = time.monotonic() + 1.0
            continue
        info = signal.sigtimedwait(WAIT_SIGNALS, timeout)
        if info is not None and info.si_signo != signal.SIGCHLD and deadline is None:
            deadline = _stop_all(info.si_signo)


def _stop_all(signum: int) -> float:
    _signal_descendants(signum)
    return time.monotonic() + TERM_GRACE_SECONDS


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
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no disposition to reset
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
        return 128 + signum  # only reached for a signal whose default action is not to terminate
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
