"""CLI layer: ``acpd prompt``: send one prompt, stream the turn, answer its permission requests,
and exit with a code that says how the turn ended. All HTTP goes through ``acpd.client``.

Permission requests are shown (title, kind, diff) and answered on the terminal, or decided by
``--approve``:

- ``ask``: ask on the terminal (``once`` / ``always`` / ``reject``, as the request offers);
- ``all``: allow every request once;
- ``reads``: allow what only looks (read, search, think, fetch), ask for the rest on a terminal,
  reject the rest without one;
- ``none``: reject every request.

The default is ``ask`` when stdin is a terminal, else ``none``: a script never hangs on a
question nobody can answer, and never allows what it was not told to. ``--approve ask`` without
a terminal is a usage error.

Exit codes: 0 the turn ended (``end_turn``); 1 an error; 2 a usage error; 3 the turn stopped short
(``max_tokens``, ``max_turn_requests``, ``refusal``); 4 no such session; 5 a permission request of
the turn was rejected (by you, ``--approve`` or the daemon); 130 cancelled (Ctrl-C cancels the
turn on the daemon).

This module imports the client only when the command runs: building the parser stays light.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from acpd.cli.render import TurnPrinter
    from acpd.client import Acpd, PermissionRequest, PromptResult, TurnStream

APPROVE_CHOICES: Final = ("ask", "all", "reads", "none")
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_STOPPED_SHORT: Final = 3
EXIT_NO_SESSION: Final = 4
EXIT_REJECTED: Final = 5
EXIT_CANCELLED: Final = 130
STOPPED_SHORT: Final = frozenset({"max_tokens", "max_turn_requests", "refusal"})


def add_arguments(prompt: argparse.ArgumentParser) -> None:
    prompt.add_argument("text", nargs="+", help="the prompt; '-' reads it from stdin")
    prompt.add_argument("--session", "-s", help="an existing session id (default: create one)")
    prompt.add_argument("--agent", "-a", help="agent for a new session (default: the daemon's default)")
    prompt.add_argument("--cwd", default=os.getcwd(), help="working directory for a new session")
    prompt.add_argument(
        "--approve",
        choices=APPROVE_CHOICES,
        help="answer permission requests: ask on the terminal, allow all, allow reads only, or none "
        "(default: ask on a terminal, else none)",
    )
    prompt.epilog = (
        "exit codes: 0 end_turn, 1 error, 2 usage, 3 stopped short (max_tokens, max_turn_requests, refusal), "
        "4 no such session, 5 a permission was rejected, 130 cancelled"
    )


def run(args: argparse.Namespace, client: Acpd, stdin: TextIO = sys.stdin, err: TextIO = sys.stderr) -> int:
    approve = args.approve or ("ask" if stdin.isatty() else "none")
    if approve == "ask" and not stdin.isatty():
        err.write("acpd: --approve ask needs a terminal on stdin; use --approve all, reads or none\n")
        return EXIT_USAGE
    from acpd.cli.render import TurnPrinter
    from acpd.client.errors import SessionNotFound

    text = stdin.read() if args.text == ["-"] else " ".join(args.text)
    printer = TurnPrinter(err=err)
    session_id = args.session
    try:
        if session_id is None:
            session_id = _create(client, args)
            err.write(f"[session {session_id}]\n")
        stream = client.stream(session_id, text, on_permission=Asker(printer, approve, stdin, err))
        for record in stream:
            printer.show(record)
    except SessionNotFound as exc:
        err.write(f"acpd: {exc.detail}\n")
        return EXIT_NO_SESSION
    except KeyboardInterrupt:
        return _cancelled(client, session_id, err)
    return _ended(stream, err)


def _create(client: Acpd, args: argparse.Namespace) -> str:
    return client.create_session(args.agent, Path(args.cwd).resolve()).id


def _cancelled(client: Acpd, session_id: str | None, err: TextIO) -> int:
    """Ctrl-C: the turn belongs to the daemon, so cancel it there rather than just leave."""
    if session_id is not None:
        try:
            client.cancel(session_id)
        except Exception as exc:  # the daemon may be the reason the user gave up
            err.write(f"acpd: could not cancel the turn: {exc}\n")
    err.write("\n[cancelled]\n")
    return EXIT_CANCELLED


def _ended(stream: TurnStream, err: TextIO) -> int:
    result: PromptResult = stream.result
    sys.stdout.write("\n")
    sys.stdout.flush()
    if result.error is not None:
        err.write(f"acpd: the turn failed: {result.error.get('message')}\n")
        return EXIT_ERROR
    err.write(f"[{result.stop_reason}]\n")
    return exit_code(result.stop_reason, rejected=bool(stream.tracker.rejected))


def exit_code(stop_reason: str | None, *, rejected: bool) -> int:
    """How a turn that was answered ended, as the command's exit code."""
    if stop_reason == "cancelled":
        return EXIT_CANCELLED
    if rejected:
        return EXIT_REJECTED
    if stop_reason in STOPPED_SHORT:
        return EXIT_STOPPED_SHORT
    return EXIT_OK if stop_reason == "end_turn" else EXIT_ERROR


class Asker:
    """The ``on_permission`` of ``acpd prompt``: shows each request, then decides it by
    ``--approve`` or asks on the terminal."""

    def __init__(self, printer: TurnPrinter, approve: str, stdin: TextIO, err: TextIO) -> None:
        self.printer, self.approve, self.stdin, self.err = printer, approve, stdin, err

    def __call__(self, request: PermissionRequest) -> str | None:
        from acpd.client.permissions import approve_all, is_read

        self.printer.permission(request)
        if self.approve == "all" or (self.approve == "reads" and is_read(request)):
            return self._decided(approve_all(request))
        if self.approve == "none" or (self.approve == "reads" and not self.stdin.isatty()):
            return self._decided("reject")
        return self.ask(request)

    def _decided(self, reply: str) -> str:
        self.err.write(f"  → {reply} (--approve {self.approve})\n")
        return reply

    def ask(self, request: PermissionRequest) -> str:
        """Read a reply the request offers (its word or first letter); end of input rejects."""
        replies = request.available_replies or ["reject"]
        question = "  allow? " + " / ".join(f"[{r[0]}]{r[1:]}" for r in replies) + ": "
        while True:
            self.err.write(question)
            self.err.flush()
            line = self.stdin.readline()
            if not line:
                self.err.write("\n")
                return "reject"
            answer = line.strip().lower()
            chosen = next((r for r in replies if answer in (r, r[0])), None)
            if chosen is not None:
                return chosen
            self.err.write(f"  answer one of: {', '.join(replies)}\n")
