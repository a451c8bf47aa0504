"""Transports layer: start a program so that nothing it starts outlives the daemon.

On Linux the program runs under a warden (``_spawner.py``): a fork of the daemon's one spawn
server, a session leader and child subreaper that the kernel signals when the server dies (which
it signals when the daemon dies), and that stops the program's whole tree when the program exits.
The program runs in the warden's session and process group, so signalling the group (its id is the
warden's pid, the ``pid`` here) reaches it, the warden and the children that stayed in it; the
warden takes a SIGTERM as "stop the whole tree". Elsewhere the program gets its own session.

The daemon makes the program's stdio pipes itself and hands their far ends to the warden
(``SCM_RIGHTS``), so it reads and writes the program directly; the warden reports the start, the
program's exit status and its own end on a socket the daemon watches like any other descriptor:
no thread per program. This module only starts processes: it must not read their output nor
decide when to stop them (the agent transport and the terminals do).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import marshal
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL, SIGTERM, Signals, pidfd_send_signal
from typing import IO, Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

SPAWNER: Final = Path(__file__).with_name("_spawner.py")
# -I -S: no site-packages, no PYTHON* variables: the server needs only the stdlib, and is smaller
# without them. Under coverage's subprocess measurement (the test suite) site must run, as that is
# where coverage starts, so that the server's and the wardens' code counts in the figure.
_SERVER_FLAGS: Final = ("-I",) if "COVERAGE_PROCESS_CONFIG" in os.environ else ("-I", "-S")
CAN_KEEP: Final = sys.platform == "linux" and os.path.isdir("/proc")
PACKET_BYTES: Final = 65536
REQUEST_CHUNK_BYTES: Final = 32768
"""Request packets: far below a socket's send buffer, so one always fits."""
FD_BYTES: Final = 4
CONTROL_TIMEOUT_SECONDS: Final = 5.0
"""How long a spawn request may wait for room on the control socket (a server that stopped reading)."""
SERVER_EXIT_SECONDS: Final = 1.0
"""At the daemon's exit, how long to wait for the server to see the end of its control socket."""
READ_BYTES: Final = 65536
ABANDONED_START_SECONDS: Final = 5.0
"""How long a start cancelled halfway may wait to learn of the program and stop it; past that,
the warden still stops it on its own once it sees the daemon has gone."""
_OPTIONS: Final = frozenset({"stdin", "stdout", "stderr", "env", "cwd"})
_Stdio = int | IO[Any] | None


async def open_contained(
    argv: Sequence[str], *, term_grace_seconds: float, keeper: bool = CAN_KEEP, **options: Any
) -> anyio.abc.Process:
    """Start ``argv`` in a session of its own, under a warden when ``keeper`` (and the platform
    has them), which gives the tree ``term_grace_seconds`` between SIGTERM and SIGKILL when it
    stops it; the tree stops when the program exits.

    ``options``: ``stdin``, ``stdout``, ``stderr`` (``subprocess.PIPE``, ``DEVNULL``, ``STDOUT``
    for stderr, a descriptor or file, or None to share the daemon's), ``env`` (the complete
    environment; None: the daemon's) and ``cwd``; anything else is refused.

    Raises:
        TypeError: an unknown option.
        ValueError: an argument, variable or directory with a NUL byte.
        OSError: the program could not be started (the warden reports exec's own error).
    """
    _check_options(options)
    if not (keeper and CAN_KEEP):
        return await anyio.open_process(list(argv), start_new_session=True, **options)
    return await _start_kept(argv, term_grace_seconds, False, options)


@dataclass(slots=True)
class Lingering:
    """A command started by ``open_lingering``."""

    process: anyio.abc.Process
    """The warden (or, without one, the command): it ends once the whole tree has."""
    kept: KeptProcess | None = None

    async def command_exit(self) -> int | None:
        """The command's return code (negative: the signal that ended it) once it exits, or None
        if its warden ended without saying (it was killed)."""
        if self.kept is None:
            return await self.process.wait()
        return await self.kept.command_exit()

    def close(self) -> None:
        if self.kept is not None:
            self.kept.release()


async def open_lingering(argv: Sequence[str], *, term_grace_seconds: float, **options: Any) -> Lingering:
    """Like ``open_contained``, for a command whose background jobs may outlive it (a terminal's):
    they run on, still contained, until they end or the warden is signalled. Close the result.

    Raises:
        TypeError: an unknown option.
        ValueError: an argument, variable or directory with a NUL byte.
        OSError: the command could not be started.
    """
    _check_options(options)
    if not CAN_KEEP:
        return Lingering(await anyio.open_process(list(argv), start_new_session=True, **options))
    kept = await _start_kept(argv, term_grace_seconds, True, options)
    return Lingering(kept, kept)


def _check_options(options: Mapping[str, Any]) -> None:
    if unknown := sorted(set(options) - _OPTIONS):
        raise TypeError(f"unexpected keyword argument(s) for a contained process: {', '.join(unknown)}")


# --- the daemon's streams on a program's pipes -------------------------------------------------


class PipeReceiveStream(anyio.abc.ByteReceiveStream):
    """The read end of a pipe, read when the event loop says it is readable.

    The loop watches the pipe from the first wait to the stream's close: one registration, where
    anyio's ``wait_readable`` makes two system calls for every wait (an agent's prompt round trip
    waits several times). A readiness report with nobody waiting unwatches it again, unless it may
    date from before the last read, so a pipe nobody reads does not wake the loop on every turn.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop watching the pipe, if one is
        self._waiter: asyncio.Future[None] | None = None
        self._just_read = False  # data was read since the loop last reported a readiness

    async def receive(self, max_bytes: int = READ_BYTES) -> bytes:
        # No yield when data is there: a waiting read yields, and a pipe holds little.
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await self._readable()
                continue
            if not data:
                raise anyio.EndOfStream
            self._just_read = True
            return data

    async def aclose(self) -> None:
        self._unwatch()
        fd, self._fd = self._fd, -1
        if (waiter := self._waiter) is not None and not waiter.done():
            waiter.set_exception(anyio.ClosedResourceError())
        if fd >= 0:
            os.close(fd)
        await anyio.lowlevel.checkpoint()

    async def _readable(self) -> None:
        if self._waiter is not None:
            raise anyio.BusyResourceError("reading from")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._unwatch()
            loop.add_reader(self._fd, self._on_readable)
            self._loop = loop
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
        elif self._just_read:
            self._just_read = False  # reported before that read took the data, maybe: look again
        else:
            self._unwatch()  # readable, and nobody reading: the next wait watches it again

    def _unwatch(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)


class PipeSendStream(anyio.abc.ByteSendStream):
    """The write end of a pipe; each ``send`` is written whole before the next begins."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        # free (the common case): taken without a yield or anyio's cancel-scope walk
        self._lock = asyncio.Lock()

    async def send(self, item: bytes) -> None:
        # Under the lock: a frame written in parts must not interleave with another sender's.
        async with self._lock:
            view = memoryview(item)
            while view:
                if self._fd < 0:
                    raise anyio.ClosedResourceError
                try:
                    view = view[os.write(self._fd, view) :]
                except BlockingIOError:
                    await anyio.wait_writable(self._fd)
                except (BrokenPipeError, ConnectionResetError) as exc:
                    raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        _close_watched(self._fd)
        self._fd = -1
        await anyio.lowlevel.checkpoint()


def _close_watched(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(RuntimeError):  # no event loop: nobody can be waiting on it
            anyio.notify_closing(fd)  # a task waiting on it gets ClosedResourceError, not a reused fd
        os.close(fd)


# --- a program under its warden ----------------------------------------------------------------


class KeptProcess(anyio.abc.Process):
    """A program running under a warden. ``pid`` is the warden's (the program's session and
    group); ``wait`` returns once the warden has ended, after the program's whole tree, with the
    program's own status."""

    def __init__(
        self,
        report: socket.socket,
        warden: int,
        pidfd: int | None,
        streams: tuple[PipeSendStream | None, PipeReceiveStream | None, PipeReceiveStream | None],
    ) -> None:
        self._report: socket.socket | None = report
        self._warden = warden
        self._pidfd = pidfd
        self._stdin, self._stdout, self._stderr = streams
        self._status: int | None = None  # the program's wait status, once reported
        self._ended = False
        self._reading = anyio.Lock()  # one reader of the report socket and the pidfd at a time

    @property
    def pid(self) -> int:
        return self._warden

    @property
    def returncode(self) -> int | None:
        if not self._ended:
            return None
        # A warden that ended without reporting was killed outright (SIGKILL is all that can).
        return -SIGKILL if self._status is None else os.waitstatus_to_exitcode(self._status)

    @property
    def stdin(self) -> PipeSendStream | None:
        return self._stdin

    @property
    def stdout(self) -> PipeReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> PipeReceiveStream | None:
        return self._stderr

    async def wait(self) -> int:
        await self._read_until(lambda: self._ended)
        code = self.returncode
        assert code is not None
        return code

    async def command_exit(self) -> int | None:
        """The program's own return code once it exits (its tree may run on: lingering), or None
        when the warden ended without saying."""
        await self._read_until(lambda: self._status is not None or self._ended)
        return None if self._status is None else os.waitstatus_to_exitcode(self._status)

    def send_signal(self, signal: Signals) -> None:
        """Signal the warden (SIGTERM: stop the whole tree); nothing once it has ended."""
        if self._ended:
            return
        with contextlib.suppress(ProcessLookupError):
            if self._pidfd is not None:
                pidfd_send_signal(self._pidfd, signal)
            else:
                os.kill(self._warden, signal)

    def terminate(self) -> None:
        self.send_signal(SIGTERM)

    def kill(self) -> None:
        """Have the warden SIGKILL the whole tree at once (the warden itself, if it cannot be asked)."""
        if self._ended:
            return
        if self._report is not None:
            with contextlib.suppress(OSError):  # the warden is gone or going: signal it instead
                self._report.send(b"kill", socket.MSG_NOSIGNAL)
                return
        self.send_signal(SIGKILL)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for stream in (self._stdin, self._stdout, self._stderr):
                if stream is not None:
                    await stream.aclose()
        try:
            await self.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                self.kill()
                await self.wait()
            raise
        finally:
            self.release()

    def release(self) -> None:
        """Let go of the report socket and the pidfd (before the end: the warden stops the tree)."""
        if self._report is not None:
            _close_watched(self._report.detach())
            self._report = None
        if self._pidfd is not None:
            _close_watched(self._pidfd)
            self._pidfd = None

    async def _read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            async with self._reading:
                if not done():
                    await self._read_report()

    async def _read_report(self) -> None:
        report = self._report
        message = b"" if report is None else await _receive(report)
        if message.startswith(b"exit "):
            self._status = int(message[5:])
        elif not message:  # the warden is gone (its pidfd says when it has fully exited)
            if self._pidfd is not None:
                await anyio.wait_readable(self._pidfd)
            self._ended = True


async def _receive(sock: socket.socket) -> bytes:
    while True:
        try:
            return sock.recv(PACKET_BYTES)
        except BlockingIOError:
            await anyio.wait_readable(sock)
        except OSError:
            return b""


# --- the spawn server --------------------------------------------------------------------------


class SpawnServer:
    """The daemon's one spawn server: started at the first spawn, and again if it has died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # requests may come from several event loops (tests)
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        """The running server's pid, if one runs."""
        with self._lock:
            return self._process.pid if self._process is not None and self._alive() else None

    def request(self, fds: Sequence[int]) -> None:
        """Have the server fork a warden with these descriptors (report socket, stdin, stdout, stderr).

        Raises:
            OSError: the server could not be started or reached.
        """
        with self._lock:
            for attempt in (1, 2):
                if not self._alive():
                    self._start()
                assert self._control is not None
                try:
                    socket.send_fds(self._control, [b"s"], list(fds), socket.MSG_NOSIGNAL)
                    return
                except OSError:
                    self._forget()  # it died since we looked: once more with a new one
                    if attempt == 2:
                        raise

    def _alive(self) -> bool:
        if self._process is not None and self._process.poll() is None:
            return True
        self._forget()
        return False

    def _forget(self) -> None:
        if self._control is not None:
            self._control.close()  # a server still alive sees its end and exits
        self._control = None
        self._process = None

    def _start(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            argv = [sys.executable, *_SERVER_FLAGS, str(SPAWNER), str(os.getpid()), str(theirs.fileno())]
            # The kernel signals the child when the *thread* that forked it ends: only the main
            # thread lives as long as the daemon. Otherwise the control socket's end tells it.
            if threading.current_thread() is threading.main_thread():
                argv.append("--pdeathsig")
            # Not posix_spawn: glibc's leaves its internal signals ignored, and an exec keeps that.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=_server_env(),
                start_new_session=True,  # a Ctrl-C meant for the daemon must not reach it
            )
        # Blocking, as requests may come from any event loop; a few bytes each, so only a stuck
        # server makes it wait, and not for ever.
        mine.settimeout(CONTROL_TIMEOUT_SECONDS)
        self._control = mine

    def close(self) -> None:
        """Stop the server (its wardens stop their trees): the daemon is exiting."""
        with self._lock:
            process = self._process
            self._forget()
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(SERVER_EXIT_SECONDS)


def _server_env() -> dict[str, str]:
    """No secrets: the server needs no variables (coverage's own, in the test suite, excepted).
    Each program gets its environment in its request."""
    return {name: value for name, value in os.environ.items() if name.startswith("COVERAGE_")}


_server: Final = SpawnServer()
atexit.register(_server.close)


def spawn_server_pid() -> int | None:
    """The running spawn server's pid (tests, benchmarks)."""
    return _server.pid


async def _start_kept(argv: Sequence[str], grace: float, linger: bool, options: dict[str, Any]) -> KeptProcess:
    request = _request(argv, grace, linger, options.get("env"), options.get("cwd"))
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        child_fds, parent_fds, to_close = _stdio(options)
    except BaseException:
        mine.close()
        theirs.close()
        raise
    sent, report = False, None
    try:
        try:
            _server.request([theirs.fileno(), *child_fds])
        finally:
            theirs.close()
            for fd in to_close:
                os.close(fd)
        mine.setblocking(False)
        await _send_request(mine, request)
        sent = True
        report = await _receive_start(mine)
        warden, pidfd = _take_start(*report)
    except BaseException:
        # Cancelled while the warden starts it: the program may already run. Closing the socket
        # alone would have the warden stop it after the caller has gone on (an agent whose start
        # was abandoned, seen still running); so take the report and stop the tree before raising.
        # (A request cut short starts nothing: the warden sees its end first.)
        if sent and report is None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(ABANDONED_START_SECONDS):
                await _stop_abandoned(mine, await _receive_start(mine), parent_fds)
        _close_all(mine, parent_fds)
        raise
    process = _kept(mine, warden, pidfd, parent_fds)
    try:
        # The report came without a checkpoint: a cancel that came meanwhile must not leave the
        # caller a process it no longer waits for.
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        with anyio.CancelScope(shield=True):
            process.kill()
            await process.aclose()
        raise
    return process


def _kept(report: socket.socket, warden: int, pidfd: int | None, parent_fds: Sequence[int | None]) -> KeptProcess:
    stdin, stdout, stderr = parent_fds
    return KeptProcess(
        report,
        warden,
        pidfd,
        (
            None if stdin is None else PipeSendStream(stdin),
            None if stdout is None else PipeReceiveStream(stdout),
            None if stderr is None else PipeReceiveStream(stderr),
        ),
    )


async def _stop_abandoned(sock: socket.socket, report: tuple[bytes, list[int]], parent_fds: list[int | None]) -> None:
    """Kill a program whose start was abandoned and wait until its tree has ended; its pipes
    are closed (the streams take them over) and its ``parent_fds`` entries cleared."""
    try:
        warden, pidfd = _take_start(*report)
    except OSError:
        return  # it never ran
    process = _kept(sock, warden, pidfd, parent_fds)
    parent_fds[:] = [None] * len(parent_fds)
    try:
        process.kill()
        await process.wait()
    finally:  # not process.aclose(): past the bound, this must not wait on
        with anyio.CancelScope(shield=True):
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()  # closes at once
        process.release()


def _close_all(sock: socket.socket, parent_fds: Sequence[int | None]) -> None:
    sock.close()  # the warden, if any, sees the end and stops what it started
    for near in parent_fds:
        if near is not None:
            os.close(near)


def _request(
    argv: Sequence[str], grace: float, linger: bool, env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None
) -> bytes:
    if not argv:
        raise ValueError("an empty command line")
    environ = os.environ if env is None else env
    request: dict[bytes, object] = {
        b"argv": [_no_nul(os.fsencode(arg)) for arg in argv],
        b"env": {_no_nul(os.fsencode(k)): _no_nul(os.fsencode(v)) for k, v in environ.items()},
        b"cwd": None if cwd is None else _no_nul(os.fsencode(cwd)),
        b"grace": float(grace),
        b"linger": linger,
    }
    data = marshal.dumps(request)
    return len(data).to_bytes(4, "big") + data


def _no_nul(value: bytes) -> bytes:
    if b"\0" in value:
        raise ValueError("embedded null byte")
    return value


def _stdio(options: Mapping[str, Any]) -> tuple[list[int], list[int | None], list[int]]:
    """The program's three descriptors, the daemon's ends of the pipes (None where there is no
    pipe), and the descriptors to close once they are sent."""
    child: list[int] = []
    parent: list[int | None] = []
    to_close: list[int] = []
    try:
        for index, name in enumerate(("stdin", "stdout", "stderr")):
            value: _Stdio = options.get(name)
            far: int | None = None
            if value == subprocess.PIPE:
                read, write = os.pipe()
                near, far = (write, read) if index == 0 else (read, write)
                parent.append(near)
                to_close.append(far)
            else:
                parent.append(None)
                if value == subprocess.DEVNULL:
                    far = os.open(os.devnull, os.O_RDWR)
                    to_close.append(far)
                elif value == subprocess.STDOUT and index == 2:
                    far = child[1]
                elif value is None:
                    far = index  # the daemon's own
                elif isinstance(value, int):
                    far = value
                else:
                    far = value.fileno()
            child.append(far)
    except BaseException:
        for fd in [*to_close, *(fd for fd in parent if fd is not None)]:
            os.close(fd)
        raise
    return child, parent, to_close


async def _send_request(sock: socket.socket, request: bytes) -> None:
    view = memoryview(request)
    for start in range(0, len(view), REQUEST_CHUNK_BYTES):
        chunk = view[start : start + REQUEST_CHUNK_BYTES]
        while True:
            try:
                sock.send(chunk, socket.MSG_NOSIGNAL)
                break
            except BlockingIOError:
                await anyio.wait_writable(sock)
            except OSError as exc:
                raise OSError(exc.errno, "the spawn server ended before starting the program") from exc


async def _receive_start(sock: socket.socket) -> tuple[bytes, list[int]]:
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, PACKET_BYTES, 1, socket.MSG_CMSG_CLOEXEC)
            return message, fds
        except BlockingIOError:
            await anyio.wait_readable(sock)
        except OSError:
            return b"", []


def _take_start(message: bytes, fds: list[int]) -> tuple[int, int | None]:
    """The warden's pid and pidfd from its start report.

    Raises:
        OSError: the program could not be started, with exec's own error where the warden had one.
    """
    words = message.split(b" ", 2)
    if words[0] == b"ok" and len(words) == 3 and words[1].isdigit():
        return int(words[1]), fds[0] if fds else None
    for fd in fds:
        os.close(fd)
    if words[0] == b"err" and len(words) > 1:
        errno_text, _, reason = b" ".join(words[1:]).decode("utf-8", "replace").partition(":")
        raise OSError(int(errno_text) if errno_text.isdigit() else 0, reason)
    raise OSError(0, "the warden ended before starting it")
