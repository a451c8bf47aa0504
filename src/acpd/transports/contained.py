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
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc

KEEPER: Final = Path(__file__).with_name("_keeper.py")
CAN_KEEP: Final = sys.platform == "linux" and os.path.isdir("/proc")
KEEPER_OK: Final = b"ok"


async def open_contained(
    argv: Sequence[str], *, term_grace_seconds: float, keeper: bool = CAN_KEEP, **options: Any
) -> anyio.abc.Process:
    """``anyio.open_process(argv, start_new_session=True, **options)``, under the keeper when
    ``keeper`` (and the platform has one), which gives the tree ``term_grace_seconds`` between
    SIGTERM and SIGKILL when it stops it.

    Raises:
        OSError: the program could not be started (the keeper reports exec's own error).
    """
    if not (keeper and CAN_KEEP):
        return await anyio.open_process(list(argv), start_new_session=True, **options)
    ready, report = os.pipe()
    try:
        # -I -S: no site-packages, no PYTHON* variables: the keeper needs only the stdlib.
        kept = [sys.executable, "-I", "-S", str(KEEPER), str(os.getpid()), str(report), str(term_grace_seconds)]
        process = await anyio.open_process([*kept, *argv], start_new_session=True, pass_fds=(report,), **options)
        os.close(report)
        report = -1
        try:
            answer = await anyio.to_thread.run_sync(_read_all, ready)
        except BaseException:
            await _discard(process)  # cancelled while the keeper starts: nothing may be left running
            raise
    finally:
        os.close(ready)
        if report >= 0:
            os.close(report)
    if answer != KEEPER_OK:
        await _discard(process)
        errno_text, _, reason = answer.decode("utf-8", "replace").partition(":")
        raise OSError(int(errno_text) if errno_text.isdigit() else 0, reason or "the keeper exited before starting it")
    return process


async def _discard(process: anyio.abc.Process) -> None:
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # the keeper; its program gets SIGTERM from the kernel
        await process.wait()
        await process.aclose()


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)
