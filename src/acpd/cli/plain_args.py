"""CLI layer: a command's options read without argparse, when the command line is plain. For
``acpd serve`` and ``acpd acp`` (the daemon, and the relay editors spawn): argparse's import, the
help formatter it makes for every option it is given and gettext's search for a translation of
each of its messages are ~5 ms of every start.

The options are declared once, for argparse (``cli._add_serve``, ``cli._add_acp``). Here that same
declaration is run against a recorder, which keeps each option's destination, kind, type, default
and choices. A command line made only of those options, each spelled in full (``--port 0``,
``--port=0``, ``-a x``) with a value its type and choices accept, is read here into what argparse
would have made of it (tests/cli/test_plain_args.py compares the two). Anything else (``--help``,
an abbreviation, an unknown word, a value argparse refuses or might read otherwise, such as one
starting with ``-``) is left to argparse, with its messages: ``plain_args`` returns None. Imports
only the stdlib.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, Protocol

KINDS = ("store", "store_true", "store_false")
"""The argparse actions read here; a declaration with any other leaves the command to argparse."""
READ = frozenset({"action", "type", "default", "dest", "choices", "help", "metavar"})
"""The ``add_argument`` keywords understood here (help and metavar only describe)."""


class Declaring(Protocol):
    """What declares a command's options: argparse's parser, or the recorder here."""

    def add_argument(self, *flags: str, **spec: Any) -> Any: ...

    def set_defaults(self, **values: Any) -> None: ...


class _Option:
    __slots__ = ("choices", "dest", "kind", "type")

    def __init__(self, dest: str, kind: str, kind_type: Callable[[str], object] | None, choices: object) -> None:
        self.dest = dest
        self.kind = kind
        self.type = kind_type
        self.choices = choices


class Recorder:
    """Takes a command's declaration as argparse's parser would (``Declaring``), keeping its
    options by flag and their defaults; ``plain`` is False once a declaration is of a kind not
    read here."""

    def __init__(self) -> None:
        self.options: dict[str, _Option] = {}
        self.defaults: dict[str, object] = {}
        self.plain = True

    def add_argument(self, *flags: str, **spec: Any) -> None:
        kind = spec.get("action") or "store"
        long = [flag for flag in flags if flag.startswith("--")]
        if kind not in KINDS or set(spec) - READ or not long or not all(flag.startswith("-") for flag in flags):
            self.plain = False
            return
        dest = spec.get("dest") or long[0][2:].replace("-", "_")
        default = spec.get("default", {"store": None, "store_true": False, "store_false": True}[kind])
        if isinstance(default, str) and spec.get("type") is not None:
            self.plain = False  # argparse converts such a default with the type: not done here
            return
        option = _Option(dest, kind, spec.get("type"), spec.get("choices"))
        self.options.update(dict.fromkeys(flags, option))
        self.defaults.setdefault(dest, default)

    def set_defaults(self, **values: Any) -> None:
        self.defaults.update(values)


def plain_args(words: Sequence[str], declare: Callable[[Declaring], None]) -> SimpleNamespace | None:
    """``words`` (a command's, after its name) read against the options ``declare`` declares, as
    argparse would read them; None when the command line is not plain (argparse must read it)."""
    recorder = Recorder()
    declare(recorder)
    if not recorder.plain:
        return None
    values = dict(recorder.defaults)
    at = 0
    while at < len(words):
        flag, equals, given = words[at].partition("=")
        at += 1
        option = recorder.options.get(flag)
        if option is None:  # --help, an abbreviation, -aVALUE, a positional word, "--", a mistake
            return None
        if option.kind != "store":
            if equals:
                return None
            values[option.dest] = option.kind == "store_true"
            continue
        if not equals:
            if at == len(words) or words[at].startswith("-"):
                return None  # no value, or one argparse may take for an option or a negative number
            given = words[at]
            at += 1
        value = _converted(given, option)
        if value is _REFUSED:
            return None
        values[option.dest] = value
    return SimpleNamespace(**values)


_REFUSED = object()


def _converted(given: str, option: _Option) -> object:
    try:
        value = given if option.type is None else option.type(given)
    except (TypeError, ValueError):
        return _REFUSED
    if option.choices is not None and value not in option.choices:  # type: ignore[operator]
        return _REFUSED
    return value
