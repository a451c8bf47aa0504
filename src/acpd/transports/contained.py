"""Transports layer: start a program so that nothing it starts outlives the daemon.

On Linux the program runs under the keeper (``_keeper.py``): a child subreaper that the kernel
signals when the daemon dies, and that stops the program's whole tree when the program exits. The
program gets its own session and process group either way, so signalling the group reaches it
and the children that stayed in it. This module only starts processes: it must not read their
output nor decide when to stop them (the agent transport and the terminals do).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

KEEPER: Final = Path(__file__).with_name("_keeper.py")
# -I -S: no site-packages, no PYTHON* variables: the keeper needs only the stdlib, and starts in
# ~15 ms without them. Under coverage's subprocess measurement (the test suite) site must run, as
# that is where coverage starts, so that the keeper's code counts in the figure.
_KEEPER_FLAGS: Final = ("-I",) if "COVERAGE_PROCESS_CONFIG" in os.environ else ("-I", "-S")
CAN_KEEP: Final = sys.platform == "linux" and os.path.isdir("/proc")
KEEPER_OK: Final = b"ok"
LINGER: Final = "--linger"
READ_BYTES: Final = 4096


async def open_contained(
    argv: Sequence[str], *, term_grace_seconds: float, keeper: bool = CAN_KEEP, **options: Any
) -> anyio.abc.Process:
    """``anyio.open_process(argv, start_new_session=True, **options)``, under the keeper when
    ``keeper`` (and the platform has one), which gives the tree ``term_grace_seconds`` between
    SIGTERM and SIGKILL when it stops it; the tree stops when the program exits.

    Raises:
        OSError: the program could not be started (the keeper reports exec's own error).
    """
    if not (keeper and CAN_KEEP):
        return await anyio.open_process(list(argv), start_new_session=True, **options)
    process, _ = await _start_kept(argv, term_grace_seconds, False, options)
    return process


@dataclass(slots=True)
class Lingering:
    """A command started by ``open_lingering``."""

    process: anyio.abc.Process
    """The keeper (or, without one, the command): it ends once the whole tree has."""
    exit_fd: int | None
    """Where the keeper reports the command's own exit; None without a keeper."""

    async def command_exit(self) -> int | None:
        """The command's return code (negative: the signal that ended it) once it exits, or None
        if the keeper ended without saying (it was killed)."""
        if self.exit_fd is None:
            return await self.process.wait()
        os.set_blocking(self.exit_fd, False)
        text = b""
        while True:
            await anyio.wait_readable(self.exit_fd)  # not a thread: a cancel must leave nothing reading
            try:
                chunk = os.read(self.exit_fd, READ_BYTES)
            except BlockingIOError:
                continue
            if not chunk:
                break
            text += chunk
        return os.waitstatus_to_exitcode(int(text)) if text.strip().isdigit() else None

    def close(self) -> None:
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None


async def open_lingering(argv: Sequence[str], *, term_grace_seconds: float, **options: Any) -> Lingering:
    """Like ``open_contained``, for a command whose background jobs may outlive it (a terminal's):
    they run on, still contained, until they end or the keeper is signalled. Close the result.

    Raises:
        OSError: the command could not be started.
    """
    if not CAN_KEEP:
        return Lingering(await anyio.open_process(list(argv), start_new_session=True, **options), None)
    process, exit_fd = await _start_kept(argv, term_grace_seconds, True, options)
    return Lingering(process, exit_fd)


async def _start_kept(
    argv: Sequence[str], grace: float, linger: bool, options: dict[str, Any]
) -> tuple[anyio.abc.Process, int]:
    """The keeper running ``argv``, and the read end of its report pipe (closed unless lingering)."""
    ready, report = os.pipe()
    try:
        kept = [sys.executable, *_KEEPER_FLAGS, str(KEEPER), str(os.getpid()), str(report), str(grace)]
        kept += [LINGER] if linger else []
        process = await anyio.open_process([*kept, *argv], start_new_session=True, pass_fds=(report,), **options)
        os.close(report)
        report = -1
        try:
            answer = await anyio.to_thread.run_sync(_read_start, ready)
            # A thread that finished does not raise a cancel that came meanwhile: the caller would
            # get a process it no longer waits for.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            await _discard(process)  # cancelled while the keeper starts: nothing may be left running
            raise
    except BaseException:
        os.close(ready)
        raise
    finally:
        if report >= 0:
            os.close(report)
    if answer != KEEPER_OK:
        os.close(ready)
        await _discard(process)
        errno_text, _, reason = answer.decode("utf-8", "replace").partition(":")
        raise OSError(int(errno_text) if errno_text.isdigit() else 0, reason or "the keeper exited before starting it")
    if not linger:
        os.close(ready)
    return process, ready


async def _discard(process: anyio.abc.Process) -> None:
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # the keeper; its program gets SIGTERM from the kernel
        await process.wait()
        await process.aclose()


def _read_start(fd: int) -> bytes:
    """The keeper's start report: up to its end of line (lingering) or of file."""
    answer = b""
    while (byte := os.read(fd, 1)) and byte != b"\n":  # byte by byte: what follows is not ours
        answer += byte
    return answer
