"""Transports layer: the spawn server and its wardens, which keep every program the daemon starts
contained (Linux only).

Run as a script, ``python -I -S _spawner.py DAEMON_PID CONTROL_FD [--pdeathsig]``: it imports only
the stdlib (its C modules where the Python wrappers would pull in more), nothing of acpd, and must
stay that small: every warden is a fork of it. It never reads or writes a program's stdio.

One server per daemon. It receives spawn requests on ``CONTROL_FD`` (a ``SOCK_SEQPACKET`` socket):
each is one byte and four file descriptors, the warden's report socket and the program's stdin,
stdout and stderr. For each it forks a **warden**, a copy-on-write fork of itself, and goes back
to listening; it reaps nothing (SIGCHLD ignored: the kernel reaps the wardens). It dies with the
daemon: the kernel signals it (``PR_SET_PDEATHSIG``, when the daemon started it from its main
thread), and the control socket reaches its end when the daemon is gone whatever thread started it.

The warden reads the request (argv, env, cwd, grace, linger) from its report socket, becomes a
session leader and a *child subreaper* (orphans below it are re-parented to it, not to init), asks
for SIGTERM when the server dies, and forks and execs the program in its session. It reports on
the socket, one packet each: ``ok WARDEN AGENT`` (with a pidfd of itself attached, where the kernel
has them) or ``err ERRNO:MESSAGE``; ``exit STATUS`` (a wait status) when the program exits; and the
socket's end when the warden is gone, after the whole tree. It stops the whole tree (SIGTERM, the
grace, then SIGKILL until nothing is left) when the program exits (unless lingering: a terminal's
background jobs run on), when it is sent SIGTERM, SIGINT or SIGHUP (a daemon's stop, or the server's
death), when the daemon closes its end of the socket (or dies), and at once with SIGKILL when the
daemon sends ``kill``.

Chain: daemon → server → wardens → programs, each signalled by the kernel when its parent dies, so
a daemon killed outright leaves nothing.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: signal.py imports enum
import _socket
import ctypes
import gc
import marshal
import os
import select
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
SIGTERM = _signal.SIGTERM
SIGKILL = _signal.SIGKILL
SIGCHLD = _signal.SIGCHLD
STOP_SIGNALS = (SIGTERM, _signal.SIGINT, _signal.SIGHUP)
KILL_RETRY_SECONDS = 0.5
"""After SIGKILL, how long before the tree is signalled again (a child forked meanwhile)."""
FDS_PER_REQUEST = 4
PACKET_BYTES = 65536
EXIT_SPAWN_FAILED = 127
FD_BYTES = 4
MSG_CMSG_CLOEXEC = getattr(_socket, "MSG_CMSG_CLOEXEC", 0x40000000)
MSG_NOSIGNAL = getattr(_socket, "MSG_NOSIGNAL", 0x4000)

_libc = ctypes.CDLL(None, use_errno=True)


def main(args: list[str]) -> int:
    if len(args) < 2 or not (args[0].isdigit() and args[1].isdigit()):
        sys.stderr.write("usage: _spawner.py DAEMON_PID CONTROL_FD [--pdeathsig]\n")
        return 2
    daemon, control = int(args[0]), int(args[1])
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the wardens hold the programs' environments
    if "--pdeathsig" in args[2:]:
        _libc.prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0)
        if os.getppid() != daemon:
            return 0  # the daemon died before the death signal was armed
    _signal.signal(SIGCHLD, _signal.SIG_IGN)  # the kernel reaps the wardens
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, control)
    gc.freeze()  # what exists now is shared with every warden: the collector must not touch it
    gc.disable()
    serve(sock)
    return 0


def serve(sock: _socket.socket) -> None:
    """Fork a warden per request until the daemon closes the control socket."""
    while True:
        try:
            data, fds = _receive(sock, 1, FDS_PER_REQUEST)
        except InterruptedError:
            continue
        if not data:
            return  # the daemon is gone
        if len(fds) == FDS_PER_REQUEST and _fork() == 0:
            sock.close()
            os._exit(_warden(*fds))
        for fd in fds:  # the warden's now (or, when it could not be forked, the daemon sees the end)
            os.close(fd)


def _fork() -> int:
    try:
        return os.fork()
    except OSError:
        return -1  # out of processes or memory: this request fails, the server goes on


def _receive(sock: _socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    data, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_LEN(max_fds * FD_BYTES), MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % FD_BYTES
            fds += [int.from_bytes(payload[i : i + FD_BYTES], sys.byteorder) for i in range(0, usable, FD_BYTES)]
    return data, fds


# --- the warden -------------------------------------------------------------------------------


def _warden(report_fd: int, stdin: int, stdout: int, stderr: int) -> int:
    server = os.getppid()
    os.setsid()
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0)
    report = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, report_fd)
    _release_stdio()
    try:
        request = _read_request(report)
    except (OSError, ValueError, EOFError, TypeError):
        return EXIT_SPAWN_FAILED  # the daemon gave up on it before sending it whole
    if os.getppid() != server:
        return EXIT_SPAWN_FAILED  # the server died before the death signal was armed
    wake = _watch_signals()
    try:
        agent = _spawn(request, server, (stdin, stdout, stderr))
    except OSError as exc:
        _tell(report, f"err {exc.errno or 0}:{exc.strerror or exc}".encode())
        return EXIT_SPAWN_FAILED
    finally:
        for fd in (stdin, stdout, stderr):
            os.close(fd)  # the program's own: holding them would hide its exit from the daemon
    _tell_started(report, agent)
    grace = request[b"grace"]
    assert isinstance(grace, float)
    _Warden(agent, report, wake, grace, bool(request[b"linger"])).run()
    return 0


def _release_stdio() -> None:
    # The server's stdio (the daemon's stderr) must not be held open by what may outlive a read of it.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd, inheritable=False)
    os.close(null)


def _read_request(report: _socket.socket) -> dict[bytes, object]:
    """The request: a 4-byte length, then that many bytes of marshal data, over one or more packets."""
    data = report.recv(PACKET_BYTES)
    size = int.from_bytes(data[:4], "big")
    data = data[4:]
    while len(data) < size:
        more = report.recv(PACKET_BYTES)
        if not more:
            raise EOFError
        data += more
    request = marshal.loads(data)
    if not isinstance(request, dict):
        raise TypeError
    return request


def _watch_signals() -> int:
    """Route the stop signals and SIGCHLD to a pipe the warden polls, with the report socket."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    for signum in (*STOP_SIGNALS, SIGCHLD):
        _signal.signal(signum, _noted)
    _signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    return wake_read


def _noted(signum: int, frame: object) -> None:
    """The signal is taken from the wake-up pipe; Python needs a handler for it to be written there."""


def _spawn(request: dict[bytes, object], server: int, stdio: tuple[int, int, int]) -> int:
    """Fork and exec the program; raise the exec's error here, in the warden.

    Not posix_spawn: the child must arm its own death signal (the warden may be killed too), and
    every signal disposition must be reset (Python ignores SIGPIPE and SIGXFSZ, the server SIGCHLD,
    and an exec keeps what is ignored).
    """
    argv = request[b"argv"]
    env = request[b"env"]
    cwd = request[b"cwd"]
    assert isinstance(argv, list) and isinstance(env, dict) and (cwd is None or isinstance(cwd, bytes))
    warden = os.getpid()
    failed, tell = os.pipe()  # closed by a successful exec: EOF means it ran
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs until exec; coverage cannot see it
        os.close(failed)
        try:
            _libc.prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0)
            if os.getppid() != warden:
                os._exit(EXIT_SPAWN_FAILED)
            for fd, target in zip(stdio, (0, 1, 2), strict=True):
                os.dup2(fd, target)
            for signum in _signal.valid_signals() - {SIGKILL, _signal.SIGSTOP}:
                try:
                    _signal.signal(signum, _signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
            _signal.pthread_sigmask(_signal.SIG_SETMASK, set())
            if cwd is not None:
                os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(tell, f"{exc.errno or 0}:{exc.strerror or exc}".encode())
        os._exit(EXIT_SPAWN_FAILED)
    os.close(tell)
    error = b""
    while chunk := os.read(failed, 4096):
        error += chunk
    os.close(failed)
    if error:
        os.waitpid(pid, 0)
        number, _, message = error.decode("utf-8", "replace").partition(":")
        raise OSError(int(number) if number.isdigit() else 0, message)
    return pid


def _tell_started(report: _socket.socket, agent: int) -> None:
    message = f"ok {os.getpid()} {agent}".encode()
    try:
        pidfd = os.pidfd_open(os.getpid())  # of itself: no pid can be reused while it runs
    except (OSError, AttributeError):
        _tell(report, message)
        return
    try:
        report.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pidfd.to_bytes(FD_BYTES, sys.byteorder))])
    except OSError:
        pass  # the daemon is gone: the socket's end says so next
    os.close(pidfd)


def _tell(report: _socket.socket, message: bytes) -> None:
    try:
        report.send(message, MSG_NOSIGNAL)
    except OSError:
        pass  # the daemon stopped listening: nobody to tell


class _Warden:
    """Waits for the program, reports its exit, and stops what it leaves behind."""

    def __init__(self, agent: int, report: _socket.socket, wake: int, grace: float, linger: bool) -> None:
        self.agent: int | None = agent
        self.report: _socket.socket | None = report
        self.wake = wake
        self.grace = grace
        self.linger = linger
        self.deadline: float | None = None  # set once stopping: when SIGKILL follows
        self.poller = select.poll()
        self.poller.register(wake, select.POLLIN)
        self.poller.register(report.fileno(), select.POLLIN)

    def run(self) -> None:
        while True:
            self._reap()
            if self.agent is None and not _has_children():
                return
            timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            if timeout == 0.0:
                _signal_descendants(SIGKILL)
                self.deadline = time.monotonic() + KILL_RETRY_SECONDS
                continue
            try:
                ready = self.poller.poll(None if timeout is None else timeout * 1000)
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == self.wake:
                    self._take_signals()
                else:
                    self._take_message()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.agent:
                self.agent = None
                if self.report is not None:
                    _tell(self.report, b"exit %d" % status)
                if not self.linger:
                    self._stop(SIGTERM)

    def _take_signals(self) -> None:
        try:
            signals = os.read(self.wake, 512)
        except BlockingIOError:
            return
        for signum in signals:
            if signum in STOP_SIGNALS:
                self._stop(signum)

    def _take_message(self) -> None:
        assert self.report is not None
        try:
            message = self.report.recv(PACKET_BYTES)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message == b"kill":
            self._stop(SIGKILL)
        elif not message:  # the daemon closed its end, or died: nobody wants the tree any more
            self.poller.unregister(self.report.fileno())
            self.report.close()
            self.report = None
            self._stop(SIGTERM)

    def _stop(self, signum: int) -> None:
        if signum == SIGKILL:
            _signal_descendants(SIGKILL)
            self.deadline = time.monotonic() + KILL_RETRY_SECONDS
        elif self.deadline is None:
            _signal_descendants(signum)
            self.deadline = time.monotonic() + self.grace


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _signal_descendants(signum: int) -> None:
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signum)
        except OSError:
            pass  # gone, or the pid was reused


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
