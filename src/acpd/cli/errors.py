"""CLI layer: how a command's ordinary failure reaches the person who ran it, one line on stderr and an
exit code, never a traceback. Only turns exceptions into lines and codes; it must not decide what
is an error (the daemon, the store and the settings raise what they refuse) nor print anything but
those lines.

The exit codes, for scripts (the README lists them):

    0    done
    1    refused or failed: a setting, a daemon that is not there or said no, a port in use
    2    the command line itself is wrong (argparse's own code)
    130  interrupted (Ctrl-C)
    141  stdout closed by the reader (``acpd sessions events X | head``), as a shell reports SIGPIPE
"""

from __future__ import annotations

import os
import sys
from typing import Final

OK: Final = 0
REFUSED: Final = 1
USAGE: Final = 2
INTERRUPTED: Final = 130
CLOSED_PIPE: Final = 128 + 13
"""What a shell reports for a process SIGPIPE ended: Python ignores the signal, so it is said by hand."""


def exit_code(exc: BaseException, *, refused: tuple[type[BaseException], ...] = ()) -> int | None:
    """The code to exit with for ``exc``, once its lines (``refusals``) are printed; None for a
    bug, which keeps its traceback. ``refused``: more exception types meant for the user (the
    HTTP client's)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return CLOSED_PIPE
    return REFUSED if refusals(exc, refused=refused) is not None else None


def refusals(exc: BaseException, *, refused: tuple[type[BaseException], ...] = ()) -> list[str] | None:
    """The messages of a refusal meant for the user (a setting refused, the store owned by another
    daemon, a port in use, a daemon not there), also when it comes wrapped in a task group's
    exception group; None for anything else, which keeps its traceback."""
    from acpd.errors import AcpdError

    if isinstance(exc, BaseExceptionGroup):
        messages = [refusals(inner, refused=refused) for inner in exc.exceptions]
        if any(m is None for m in messages):
            return None
        return [line for m in messages if m for line in m]
    if isinstance(exc, BrokenPipeError | KeyboardInterrupt):
        return []  # nobody left to tell, or the person pressed Ctrl-C themselves
    if _lost_daemon(exc):
        return [_unreachable(exc)]
    if isinstance(exc, (AcpdError, OSError, *refused)):
        return [str(exc)]
    return None


def _lost_daemon(exc: BaseException) -> bool:
    """An HTTP transport failure (no daemon listening, or one that went away mid-answer). httpx
    is only looked at when a command has imported it: most commands never do."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.TransportError)


def _unreachable(exc: BaseException) -> str:
    try:
        url = f"{exc.request.url.scheme}://{exc.request.url.netloc.decode()}"  # type: ignore[attr-defined]
    except RuntimeError:  # httpx raises it for an error made without its request
        url = "the daemon's URL"
    return f"cannot reach the acpd daemon at {url} ({str(exc) or type(exc).__name__}); start one with `acpd serve`"


def quiet_closed_stdout() -> None:
    """After stdout's reader went away: point stdout at /dev/null, so that the interpreter's
    flush at exit finds nothing to complain about ("Exception ignored ... BrokenPipeError"), as
    the Python documentation's note on SIGPIPE does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def report(exc: BaseException, *, refused: tuple[type[BaseException], ...] = ()) -> int:
    """Print ``exc``'s lines on stderr and give the exit code; re-raise a bug (its traceback is
    the report a bug needs)."""
    code = exit_code(exc, refused=refused)
    if code is None:
        raise exc
    if code == CLOSED_PIPE:
        quiet_closed_stdout()
        return code
    for message in refusals(exc, refused=refused) or []:
        print(f"acpd: {message}", file=sys.stderr)
    return code
