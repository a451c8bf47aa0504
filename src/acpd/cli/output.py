"""CLI layer: how the commands that list or show print what they got, for a person (tables with a
header row) or for a program (``--json``). Only formats: it must not fetch, decide or exit.

``--json`` prints one JSON document (the daemon's own page or object, unchanged), except for
``acpd sessions events``, which prints JSON lines, one event record a line, so that ``--follow``
can stream and a pipe can read event by event.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from acpd.protocol import jsonio

if TYPE_CHECKING:
    import argparse

Column = tuple[str, Callable[[Mapping[str, Any]], object]]
"""A column: its header and how a row's cell is read from an item."""
DETAIL_WIDTH: Final = 80
"""An event's detail is cut to this many characters in the table (``--json`` has it whole)."""


def add_json_option(parser: argparse.ArgumentParser, *, lines: bool = False) -> None:
    what = "JSON lines, one event a line" if lines else "one JSON document"
    parser.add_argument("--json", action="store_true", help=f"machine output: {what} (default: a table)")


def print_json(document: object, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(jsonio.dumps_str(document) + "\n")


def table(items: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> list[str]:
    """The lines of a table: a header row, then a row per item, columns as wide as their widest
    cell (the last one unpadded), two spaces between them."""
    rows = [[header for header, _ in columns]]
    rows += [[_cell(read(item)) for _, read in columns] for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def print_table(items: Iterable[Mapping[str, Any]], columns: Sequence[Column], out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    for line in table(items, columns):
        stream.write(line + "\n")


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


SESSION_COLUMNS: Final[Sequence[Column]] = (
    ("ID", lambda s: s["id"]),
    ("AGENT", lambda s: s.get("agent")),
    ("STATUS", lambda s: s.get("status")),
    ("TURNS", lambda s: s.get("turns")),
    ("CREATED", lambda s: s.get("createdAt")),
    ("TITLE", lambda s: s.get("title")),
)


def print_sessions(page: Mapping[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(page)
    else:
        print_table(page["items"], SESSION_COLUMNS)


SESSION_FIELDS: Final[Sequence[tuple[str, str]]] = (
    ("id", "ID"),
    ("agent", "AGENT"),
    ("status", "STATUS"),
    ("title", "TITLE"),
    ("cwd", "CWD"),
    ("model", "MODEL"),
    ("mode", "MODE"),
    ("thoughtLevel", "THOUGHT LEVEL"),
    ("turns", "TURNS"),
    ("createdAt", "CREATED"),
    ("updatedAt", "UPDATED"),
    ("archivedAt", "ARCHIVED"),
    ("backendSessionId", "AGENT SESSION"),
)


def print_session(doc: Mapping[str, Any], *, as_json: bool) -> None:
    """One session: a FIELD/VALUE table of what a person looks for (``--json``: all of it)."""
    if as_json:
        print_json(doc)
        return
    rows = [{"field": label, "value": doc.get(key)} for key, label in SESSION_FIELDS]
    rows.append({"field": "POLICY", "value": _compact(doc.get("policy"))})
    rows.append({"field": "USAGE", "value": _compact(doc.get("usage"))})
    print_table(rows, (("FIELD", lambda r: r["field"]), ("VALUE", lambda r: r["value"])))


class EventPrinter:
    """A session's events, one line each, as they come (``--follow`` streams): a table whose
    columns have fixed widths, or JSON lines."""

    HEADER: Final = f"{'SEQ':>6}  {'AT':<24}  {'FROM':<6}  {'TURN':>4}  {'WHAT':<24}  DETAIL"

    def __init__(self, *, as_json: bool, out: TextIO | None = None) -> None:
        self._json = as_json
        self._out = out or sys.stdout
        self._headed = False

    def show(self, event: Mapping[str, Any], *, flush: bool = False) -> None:
        if self._json:
            self._out.write(jsonio.dumps_str(event) + "\n")
        else:
            if not self._headed:
                self._out.write(self.HEADER + "\n")
                self._headed = True
            what, detail = describe_event(event.get("payload") or {})
            turn = _cell(event.get("turn"))
            sender = _cell(event.get("sender"))
            self._out.write(f"{event['seq']:>6}  {event.get('at', ''):<24}  {sender:<6}  {turn:>4}  {what:<24}  ")
            self._out.write(_one_line(detail) + "\n")
        if flush:
            self._out.flush()


def describe_event(payload: Mapping[str, Any]) -> tuple[str, str]:
    """An event's kind (the update's kind, the method, ``result`` or ``error``) and a short detail."""
    params = payload.get("params") or {}
    method = payload.get("method")
    if method == "session/update":
        update = params.get("update") or {}
        content = update.get("content")
        text = content.get("text") if isinstance(content, Mapping) else None
        detail = text or update.get("title") or update.get("status") or _compact(_without(update, "sessionUpdate"))
        return str(update.get("sessionUpdate", "update")), str(detail)
    if method == "session/prompt":
        blocks = params.get("prompt") or []
        return "prompt", " ".join(str(b.get("text", f"[{b.get('type')}]")) for b in blocks if isinstance(b, Mapping))
    if method == "session/request_permission":
        return "permission", str((params.get("toolCall") or {}).get("title") or "")
    if method is not None:
        return str(method), _compact(_without(params, "sessionId"))
    if "error" in payload:
        return "error", str((payload.get("error") or {}).get("message", ""))
    return "result", _compact(payload.get("result"))


def _without(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _compact(value: object) -> str:
    return "" if value in (None, {}, []) else jsonio.dumps_str(value)


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_WIDTH else flat[: DETAIL_WIDTH - 1] + "…"


AGENT_COLUMNS: Final[Sequence[Column]] = (
    ("NAME", lambda a: a["name"]),
    ("KIND", lambda a: a.get("kind")),
    ("VERSION", lambda a: a.get("version")),
    ("SOURCE", lambda a: a.get("source")),
    ("CREDENTIALS", lambda a: (a.get("credentials") or {}).get("present")),
    ("USABLE", lambda a: a.get("usable")),
    ("WHY NOT", lambda a: a.get("reason")),
)


def print_agents(facts: list[dict[str, Any]], *, as_json: bool) -> int:
    if as_json:
        print_json({"items": facts})
    else:
        print_table(facts, AGENT_COLUMNS)
    return 0
