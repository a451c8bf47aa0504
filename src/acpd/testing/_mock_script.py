"""Test kit: the mock agent's prompt language, parsed. Pure: prompt text in, commands out; no I/O.

A prompt is a script when its first non-blank line is a valid command; then every non-blank line
must be one, and a bad line rejects the whole prompt before anything runs. Any other prompt is
echoed. ``docs/mock-agent.md`` is the reference for every command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from acpd.testing._mock_rpc import INTERNAL_ERROR
from acpd.testing._mock_sessions import MODE_IDS

TOOL_KINDS: Final = frozenset(
    {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"}
)
STOP_REASONS: Final = frozenset({"end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled"})
DEFAULT_ERROR_CODE: Final = INTERNAL_ERROR
DEFAULT_CRASH_CODE: Final = 3
_MAX_COUNT: Final = 2**53
_INT32: Final = 2**31


class ScriptError(ValueError):
    """A line of a script that is not a valid command."""


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed line. Which fields a command uses is documented with its parser below."""

    name: str
    line: int = 0
    word: str = ""
    text: str = ""
    ints: tuple[int, ...] = ()
    number: float | None = None


def parse_prompt(prompt: str) -> list[Command] | None:
    """The prompt's commands, or ``None`` when the prompt is to be echoed.

    Raises:
        ScriptError: the first line is a command but a later one is not.
    """
    lines = [(number, line.strip()) for number, line in enumerate(prompt.split("\n"), start=1) if line.strip()]
    if not lines:
        return None
    try:
        first = parse_line(*lines[0])
    except ScriptError:
        return None
    return [first, *(parse_line(number, line) for number, line in lines[1:])]


def parse_line(number: int, line: str) -> Command:
    """Parse one non-blank line.

    Raises:
        ScriptError: unknown command or bad arguments.
    """
    name, _, rest = line.partition(" ")
    parser = _PARSERS.get(name)
    if parser is None:
        raise ScriptError(f"line {number}: unknown command {name!r}")
    rest = rest.strip()
    try:
        return parser(Command(name, number), rest, rest.split())
    except ScriptError as exc:
        raise ScriptError(f"line {number}: {name}: {exc}") from None


_Parser = Callable[[Command, str, list[str]], Command]


def _free_text(cmd: Command, rest: str, args: list[str]) -> Command:
    """text, think, title, stderr: ``text`` is the rest of the line."""
    return _replace(cmd, text=rest)


def _required_text(cmd: Command, rest: str, args: list[str]) -> Command:
    """read <path>, run <command…>: ``text`` is the rest of the line, which must not be empty."""
    if not rest:
        raise ScriptError("needs an argument")
    return _replace(cmd, text=rest)


def _no_args(cmd: Command, rest: str, args: list[str]) -> Command:
    """meta, hostile, context."""
    if args:
        raise ScriptError("takes no arguments")
    return cmd


def _garbage(cmd: Command, rest: str, args: list[str]) -> Command:
    """garbage [<N>]: ``ints`` is ``(N,)``, or empty for one line."""
    _arity(args, 0, 1)
    return _replace(cmd, ints=(_int(args[0], "N", 0),) if args else ())


def _chunks(cmd: Command, rest: str, args: list[str]) -> Command:
    """chunks <N> [<bytes>]: ``ints`` is ``(N, bytes)``, bytes 0 for the short default."""
    _arity(args, 1, 2)
    size = _int(args[1], "bytes", 1) if len(args) == 2 else 0
    return _replace(cmd, ints=(_int(args[0], "N", 0), size))


def _tool(cmd: Command, rest: str, args: list[str]) -> Command:
    """tool <kind> [<title…>]: ``word`` is the kind, ``text`` the title."""
    if not args:
        raise ScriptError("needs a tool kind")
    return _replace(cmd, word=_tool_kind(args[0]), text=rest[len(args[0]) :].strip())


def _permission(cmd: Command, rest: str, args: list[str]) -> Command:
    """permission [<kind>]: ``word`` is the kind, default edit."""
    _arity(args, 0, 1)
    return _replace(cmd, word=_tool_kind(args[0]) if args else "edit")


def _plan(cmd: Command, rest: str, args: list[str]) -> Command:
    """plan <N>: ``ints`` is ``(N,)``."""
    _arity(args, 1, 1)
    return _replace(cmd, ints=(_int(args[0], "N", 0),))


def _usage(cmd: Command, rest: str, args: list[str]) -> Command:
    """usage <input> <output> [<costUSD>]: ``ints`` is ``(input, output)``, ``number`` the cost."""
    _arity(args, 2, 3)
    cost = _number(args[2], "costUSD") if len(args) == 3 else None
    return _replace(cmd, ints=(_int(args[0], "input", 0), _int(args[1], "output", 0)), number=cost)


def _sleep(cmd: Command, rest: str, args: list[str]) -> Command:
    """sleep <seconds>: ``number`` is the seconds."""
    _arity(args, 1, 1)
    return _replace(cmd, number=_number(args[0], "seconds"))


def _error(cmd: Command, rest: str, args: list[str]) -> Command:
    """error [<code>] [<message…>]: ``ints`` is ``(code,)``, ``text`` the message."""
    code, message = DEFAULT_ERROR_CODE, rest
    if args and _is_int(args[0]):
        code, message = _int(args[0], "code", -_INT32, _INT32 - 1), rest[len(args[0]) :].strip()
    return _replace(cmd, ints=(code,), text=message or "Mock error")


def _crash(cmd: Command, rest: str, args: list[str]) -> Command:
    """crash [<exit code>]: ``ints`` is ``(code,)``."""
    _arity(args, 0, 1)
    return _replace(cmd, ints=(_int(args[0], "exit code", 0, 255) if args else DEFAULT_CRASH_CODE,))


def _mode(cmd: Command, rest: str, args: list[str]) -> Command:
    """mode <id>: ``word`` is the mode id."""
    _arity(args, 1, 1)
    if args[0] not in MODE_IDS:
        raise ScriptError(f"unknown mode {args[0]!r}; choose one of {sorted(MODE_IDS)}")
    return _replace(cmd, word=args[0])


def _write(cmd: Command, rest: str, args: list[str]) -> Command:
    """write <path> <text…>: ``word`` is the path, ``text`` the content."""
    if not args:
        raise ScriptError("needs a path")
    return _replace(cmd, word=args[0], text=rest[len(args[0]) :].strip())


def _big(cmd: Command, rest: str, args: list[str]) -> Command:
    """big <bytes>, stderr-flood <bytes>: ``ints`` is ``(bytes,)``."""
    _arity(args, 1, 1)
    return _replace(cmd, ints=(_int(args[0], "bytes", 0),))


def _stop(cmd: Command, rest: str, args: list[str]) -> Command:
    """stop <reason>: ``word`` is the stop reason."""
    _arity(args, 1, 1)
    if args[0] not in STOP_REASONS:
        raise ScriptError(f"unknown stop reason {args[0]!r}; choose one of {sorted(STOP_REASONS)}")
    return _replace(cmd, word=args[0])


_PARSERS: Final[dict[str, _Parser]] = {
    "text": _free_text,
    "chunks": _chunks,
    "think": _free_text,
    "tool": _tool,
    "permission": _permission,
    "plan": _plan,
    "usage": _usage,
    "sleep": _sleep,
    "detach": _sleep,
    "error": _error,
    "crash": _crash,
    "garbage": _garbage,
    "stderr": _free_text,
    "stderr-flood": _big,
    "title": _free_text,
    "mode": _mode,
    "read": _required_text,
    "write": _write,
    "run": _required_text,
    "meta": _no_args,
    "hostile": _no_args,
    "context": _no_args,
    "attachments": _no_args,
    "big": _big,
    "stop": _stop,
}
COMMANDS: Final = frozenset(_PARSERS)


def _replace(
    cmd: Command, *, word: str = "", text: str = "", ints: tuple[int, ...] = (), number: float | None = None
) -> Command:
    return Command(cmd.name, cmd.line, word, text, ints, number)


def _arity(args: list[str], least: int, most: int) -> None:
    if not least <= len(args) <= most:
        expected = str(least) if least == most else f"{least} to {most}"
        raise ScriptError(f"takes {expected} arguments, got {len(args)}")


def _tool_kind(kind: str) -> str:
    if kind not in TOOL_KINDS:
        raise ScriptError(f"unknown tool kind {kind!r}; choose one of {sorted(TOOL_KINDS)}")
    return kind


def _is_int(text: str) -> bool:
    digits = text.removeprefix("-")
    return digits.isascii() and digits.isdigit()


def _int(text: str, what: str, least: int, most: int = _MAX_COUNT) -> int:
    if not _is_int(text) or not least <= int(text) <= most:
        raise ScriptError(f"{what} must be an integer from {least} to {most}, got {text!r}")
    return int(text)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ScriptError(f"{what} must be a number >= 0, got {text!r}")
    return value
