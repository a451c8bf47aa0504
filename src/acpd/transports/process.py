"""Transports layer: an ACP agent as a child process, framed NDJSON over its stdin/stdout.

Owns the child's whole life: spawn in its own session, drain stderr continuously (a chatty agent
must never block on a full pipe; one that floods it is read at ``STDERR_BYTES_PER_SECOND`` and
waits, so it cannot take a core of the daemon's), and stop the whole process tree with a ladder of
named grace periods. Knows no JSON-RPC methods and never parses a frame; imports only the protocol layer and
``acpd.errors``.

Linux is the target: descendants are found through ``/proc``, and each agent runs under a keeper,
a warden forked by the daemon's one spawn server (``_spawner.py``, ``contained.py``): a subreaper
that the kernel signals when the daemon dies, so nothing the agent started outlives the daemon,
even one killed outright. Elsewhere the ladder still signals the
agent's process group, which misses only descendants that left it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio
import anyio.abc

from acpd.errors import AgentUnavailable, ConnectionClosed
from acpd.protocol.framing import MAX_LINE_BYTES, Frame
from acpd.transports._lines import READ_CHUNK_BYTES, LineReader
from acpd.transports.contained import CAN_KEEP, open_contained

logger = logging.getLogger(__name__)

STDIN_CLOSE_GRACE_SECONDS: Final = 0.5
"""How long an agent gets to exit on its own after its stdin is closed."""
TERM_GRACE_SECONDS: Final = 2.0
"""How long the process tree gets to exit after SIGTERM before SIGKILL."""
KILL_GRACE_SECONDS: Final = 2.0
"""How long to wait for the agent to be reaped after SIGKILL before giving up (uninterruptible sleep)."""
LADDER: Final = ((signal.SIGTERM, TERM_GRACE_SECONDS), (signal.SIGKILL, KILL_GRACE_SECONDS))
"""Each signal of a stop, and how long its targets get to exit before the next."""
STDERR_FLUSH_SECONDS: Final = 0.5
"""After the tree is gone, how long to wait for the last stderr bytes (an escaped process may hold the pipe)."""
STDERR_TAIL_BYTES: Final = 64 * 1024
STDERR_CHUNK_BYTES: Final = 1024 * 1024
"""Asked per read: a flood arrives in few large chunks, of which only the tail is kept."""
STDERR_BYTES_PER_SECOND: Final = 8 * 1024 * 1024
"""How fast stderr is read at most. Far above what any agent logs; past it, the agent blocks on a
full pipe until the next second (reading a flood as fast as it comes takes most of a core)."""
CLOCK_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

_Members = dict[int, int]
"""Descendants of an agent: pid → start time (clock ticks after boot), which tells a reused pid apart."""


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """How to start an agent."""

    command: str
    """Program name (looked up on the spec's PATH) or path (relative to ``cwd``)."""
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    """The complete environment of the child; ``None`` inherits ``os.environ``."""
    cwd: str | None = None
    keeper: bool = CAN_KEEP
    """Run the agent under the keeper (Linux): its tree cannot outlive the daemon."""
    stdin_close_grace_seconds: float = STDIN_CLOSE_GRACE_SECONDS
    """How long to wait for an exit after closing stdin; 0 for agents known to ignore it."""


class ProcessTransport:
    """A running agent process as a ``Transport``. Build it with ``open_process_transport``."""

    def __init__(
        self,
        process: anyio.abc.Process,
        *,
        max_line_bytes: int,
        on_stderr: Callable[[bytes], None] | None,
        stdin_grace: float = STDIN_CLOSE_GRACE_SECONDS,
    ) -> None:
        assert process.stdin and process.stdout and process.stderr, "spawned with three pipes"
        self._stdin_grace = stdin_grace
        self._process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._stderr = process.stderr
        self._start_time: int | None = None  # tells the agent from a process reusing its pid
        self._lines = LineReader(self._read_stdout, max_line_bytes)
        self._on_stderr = on_stderr
        self._tail = bytearray()
        self._closing = False
        self._closed = anyio.Event()
        self._exited = anyio.Event()
        self._stderr_done = anyio.Event()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the agent has been reaped (negative: killed by that signal)."""
        return self._process.returncode

    @property
    def exited(self) -> anyio.Event:
        """Set when the agent process has exited (its descendants may still run)."""
        return self._exited

    def stderr_tail(self) -> str:
        """The last ``STDERR_TAIL_BYTES`` the agent wrote to stderr, decoded leniently."""
        return self._tail.decode("utf-8", "replace")

    async def wait(self) -> int:
        """Wait for the agent to exit and return its exit status."""
        returncode = await self._process.wait()
        self._exited.set()
        return returncode

    async def send(self, frame: bytes) -> None:
        """Write one message and its newline.

        Raises:
            ConnectionClosed: the agent exited, closed its stdin, or this transport is closed.
        """
        if self._closing or self.returncode is not None:
            raise ConnectionClosed(f"agent process {self.pid} is no longer accepting messages")
        try:
            # One write per frame: asyncio buffers it whole, so concurrent senders never interleave
            # (and since Python 3.10 several tasks may await the same drain).
            await self._stdin.send(frame + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionClosed(f"agent process {self.pid} closed its stdin") from exc

    async def receive(self) -> list[Frame]:
        """Every complete frame available, at least one.

        Raises:
            anyio.EndOfStream: the agent closed its stdout (after any final unterminated line).
        """
        return await self._lines.receive()

    async def _read_stdout(self) -> bytes:
        try:
            return await self._stdout.receive(READ_CHUNK_BYTES)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return b""  # anyio never returns an empty chunk otherwise

    async def aclose(self) -> None:
        """Stop the agent and everything it started; idempotent, bounded, never cancelled halfway."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            try:
                await self._stop_tree()
                with anyio.move_on_after(STDERR_FLUSH_SECONDS):
                    await self._stderr_done.wait()
                await self._close_pipes()
            finally:
                self._closed.set()

    async def _close_pipes(self) -> None:
        if self.returncode is not None:
            await self._process.aclose()  # closes the pipe transports too; returns at once
            return
        # Unkillable (uninterruptible sleep): anyio's aclose would wait for it forever.
        await self._stdout.aclose()
        await self._stderr.aclose()

    async def _note_start_time(self) -> None:
        self._start_time = await anyio.to_thread.run_sync(_start_time, self.pid)

    async def _drain_stderr(self) -> None:
        budget = ByteRate(STDERR_BYTES_PER_SECOND, anyio.current_time)
        try:
            while True:
                try:
                    chunk = await self._stderr.receive(STDERR_CHUNK_BYTES)
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                self._keep_stderr(chunk)
                if (wait := budget.spend(len(chunk))) > 0:
                    if not budget.warned:
                        budget.warned = True
                        logger.warning("agent process %d floods its stderr; reading it more slowly", self.pid)
                    await anyio.sleep(wait)
        finally:
            self._stderr_done.set()

    def _keep_stderr(self, chunk: bytes) -> None:
        if len(chunk) >= STDERR_TAIL_BYTES:
            self._tail[:] = chunk[-STDERR_TAIL_BYTES:]
        else:
            self._tail += chunk
            if len(self._tail) > STDERR_TAIL_BYTES:
                del self._tail[:-STDERR_TAIL_BYTES]
        if self._on_stderr is not None:
            try:
                self._on_stderr(chunk)
            except Exception:
                # An observer's bug must not stop the draining, or the agent blocks on a full pipe.
                logger.exception("on_stderr callback failed for agent process %d", self.pid)

    async def _stop_tree(self) -> None:
        # The tree is collected before stdin is closed: once the agent exits, its setsid'ed
        # descendants are re-parented and nothing in /proc links them to the agent any more.
        members = await self._collect({})
        await self._stdin.aclose()
        if self._stdin_grace > 0:
            await self._wait_gone(members, self._stdin_grace)
        for signum, grace in LADDER:
            members = await self._collect(members)
            if self.returncode is not None and not members:
                return
            self._signal_tree(members, signum)
            await self._wait_gone(members, grace)
        if self.returncode is None:
            logger.warning("agent process %d survived SIGKILL for %.1fs", self.pid, KILL_GRACE_SECONDS)

    async def _collect(self, remembered: _Members) -> _Members:
        return await anyio.to_thread.run_sync(_collect_tree, self.pid, self._start_time, remembered)

    def _signal_tree(self, members: _Members, signum: int) -> None:
        # The group id is the agent's pid (or its keeper's); it cannot be reused while any member
        # of the group is alive, so it is safe to signal even once that process has exited.
        signal_group(self.pid, signum)
        for pid in members:
            _kill(os.kill, pid, signum)

    async def stop_detached_since(self, mark: int) -> int:
        """Stop the descendants started since ``mark`` that left the agent's session, and their trees.

        ``mark`` comes from ``process_mark()``. An agent that cancels a turn should stop the command
        it ran; codex-acp answers the cancel but leaves the command running in a session of its own.
        Descendants still in the agent's session are the agent's own helpers, and are left alone.
        Returns how many were found.
        """
        if not CAN_KEEP or self.returncode is not None:
            return 0
        strays = await anyio.to_thread.run_sync(_collect_detached, self.pid, mark)
        if strays:
            logger.info("stopping %d process(es) agent %d left running after a cancel", len(strays), self.pid)
            for signum, grace in LADDER:
                for pid, start in strays.items():
                    if _start_time(pid) == start:  # not a reused pid
                        _kill(os.kill, pid, signum)
                with anyio.move_on_after(grace):
                    await anyio.to_thread.run_sync(_wait_pids_gone, strays, grace, abandon_on_cancel=True)
        return len(strays)

    async def _wait_gone(self, members: _Members, grace_seconds: float) -> None:
        with anyio.move_on_after(grace_seconds) as scope:
            # Awaited here, not only in the watcher task: that one is cancelled with our owner.
            await self.wait()
            if members:
                left = scope.deadline - anyio.current_time()
                await anyio.to_thread.run_sync(_wait_pids_gone, members, left, abandon_on_cancel=True)


class ByteRate:
    """A budget of bytes per second: ``spend`` says how long to wait once a second's worth is used."""

    def __init__(self, per_second: int, clock: Callable[[], float]) -> None:
        self._per_second = per_second
        self._clock = clock
        self._start = clock()
        self._spent = 0
        self.warned = False

    def spend(self, size: int) -> float:
        """Count ``size`` bytes; the seconds to wait before reading more (0: none)."""
        now = self._clock()
        if now - self._start >= 1.0:
            self._start, self._spent = now, 0
        self._spent += size
        if self._spent < self._per_second:
            return 0.0
        wait = self._start + 1.0 - now
        self._start, self._spent = max(now, self._start + 1.0), 0
        return max(0.0, wait)


@asynccontextmanager
async def open_process_transport(
    spec: ProcessSpec,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    on_stderr: Callable[[bytes], None] | None = None,
) -> AsyncIterator[ProcessTransport]:
    """Start the agent; on leaving the context, stop it and its whole process tree (``aclose``).

    ``on_stderr`` receives every stderr chunk as it arrives, on the event loop thread.

    Raises:
        AgentUnavailable: the command is missing, not executable, or cannot be started.
    """
    transport = ProcessTransport(
        await _spawn(spec),
        max_line_bytes=max_line_bytes,
        on_stderr=on_stderr,
        stdin_grace=spec.stdin_close_grace_seconds,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport._drain_stderr)
            tg.start_soon(transport.wait)
            try:
                await transport._note_start_time()
                yield transport
            finally:
                await transport.aclose()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The background tasks do not raise, so a lone error came from the caller's block:
        # give it back as raised, not wrapped in a group the caller never asked for.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _spawn(spec: ProcessSpec) -> anyio.abc.Process:
    try:
        return await open_contained(
            [_resolve_command(spec), *spec.args],
            term_grace_seconds=TERM_GRACE_SECONDS,
            keeper=spec.keeper,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(spec.env) if spec.env is not None else None,
            cwd=spec.cwd,
        )
    except OSError as exc:
        raise _unavailable(spec, exc) from exc


def _unavailable(spec: ProcessSpec, exc: OSError) -> AgentUnavailable:
    return AgentUnavailable(
        f"cannot start agent command {spec.command!r}: {exc.strerror or exc}"
        + (f" (cwd {spec.cwd!r})" if spec.cwd else ""),
        data={"command": spec.command},
    )


def _resolve_command(spec: ProcessSpec) -> str:
    # Mirror what exec will do: a bare name is searched on the child's PATH, a path is taken
    # relative to the child's cwd.
    if os.sep in spec.command or (os.altsep and os.altsep in spec.command):
        path = os.path.join(spec.cwd or "", spec.command)
        found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        env = spec.env if spec.env is not None else os.environ
        found = shutil.which(spec.command, path=env.get("PATH", os.defpath))
    if found is None:
        raise AgentUnavailable(
            f"agent command {spec.command!r} was not found or is not executable; install it, "
            "or configure its full path (or a PATH that contains it) for this agent",
            data={"command": spec.command},
        )
    return os.path.abspath(found)  # exec would resolve a relative path against the child's cwd


def process_mark() -> int:
    """A point in time, for ``stop_detached_since``: processes started from now on are newer."""
    # /proc's start times count clock ticks since boot, suspend included: CLOCK_BOOTTIME.
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS_PER_SECOND) if CAN_KEEP else 0


def signal_group(pgid: int, signum: int) -> None:
    """Signal a whole process group; a group already gone (or no longer ours) is not an error."""
    _kill(os.killpg, pgid, signum)


def _kill(send: Callable[[int, int], None], pid: int, signum: int) -> None:
    # ESRCH: already gone. EPERM: the pid now belongs to someone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, signum)


@dataclass(frozen=True, slots=True)
class _Stat:
    state: bytes
    ppid: int
    pgrp: int
    session: int
    start_time: int


def _read_stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name sits in parentheses and may itself contain spaces and ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return _Stat(fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    stat = _read_stat(pid)
    return stat.start_time if stat else None


def _scan_proc() -> dict[int, _Stat]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    table = {}
    for name in names:
        if name.isdigit() and (stat := _read_stat(int(name))) is not None:
            table[int(name)] = stat
    return table


def _collect_tree(leader: int, leader_start: int | None, remembered: _Members) -> _Members:
    """Live descendants of the agent: its session and group, what it spawned, what we saw before.

    Runs in a worker thread (it reads all of ``/proc``). The agent itself is not included. The
    agent's pid counts as a parent only while it still names the agent (same start time); as a
    session or group id it cannot be reused while any member is alive.
    """
    table = _scan_proc()
    roots = {pid for pid, start in remembered.items() if pid in table and table[pid].start_time == start}
    roots.update(pid for pid, stat in table.items() if leader in (stat.session, stat.pgrp))
    if leader in table and table[leader].start_time != leader_start:
        roots.discard(leader)
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, stack = set(roots), list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    found.discard(leader)
    return {pid: table[pid].start_time for pid in found if table[pid].state not in (b"Z", b"X")}


def _collect_detached(leader: int, mark: int) -> _Members:
    """Descendants of ``leader`` started at ``mark`` or later in another session, with their trees.

    Runs in a worker thread. The leader's session id is its pid (it was started with setsid).
    """
    table = _scan_proc()
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    found: set[int] = set()
    stack = [leader]
    while stack:
        parent = stack.pop()
        for child in children.get(parent, ()):
            stat = table[child]
            # A tick of slack: the mark and the start time are both rounded down to a tick.
            if parent in found or (stat.session != leader and stat.start_time >= mark - 1):
                found.add(child)
            stack.append(child)
    return {pid: table[pid].start_time for pid in found if table[pid].state not in (b"Z", b"X")}


def _wait_pids_gone(members: _Members, timeout: float) -> None:
    """Block until every member has exited or ``timeout`` passes. Runs in a worker thread.

    A pidfd becomes readable when its process exits, even when that process is not our child.
    Without pidfds (old kernels) there is nothing to wait on, so return and let SIGKILL follow.
    """
    fds: list[int] = []
    try:
        for pid, start in members.items():
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except (OSError, AttributeError):
                return
            # Checked after opening: from here on the pidfd pins this very process.
            if _start_time(pid) == start:
                fds.append(fd)
            else:
                os.close(fd)
        _poll_all(fds, timeout)
    finally:
        for fd in fds:
            os.close(fd)


def _poll_all(fds: list[int], timeout: float) -> None:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    pending = len(fds)
    deadline = time.monotonic() + timeout
    while pending and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            pending -= 1
