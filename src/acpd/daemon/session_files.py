"""Daemon layer: the JSON and JSON-lines export files of a session, written and read back. Pure.

Both open with the session document under ``acpdExport`` (the format's version); JSON lines then
give one event record a line, in the wire form of ``GET /v1/sessions/{id}/events``; JSON holds the
records in ``events``. ``parse`` checks a file whole before anything is made of it: a malformed or
truncated one is refused, naming the line, so an import never leaves half a session behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, get_args

from acpd.errors import InvalidInput
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, Sender
from acpd.protocol.jsonio import JsonObject

VERSION: Final = 1
SENDERS: Final = frozenset(get_args(Sender))


@dataclass(frozen=True, slots=True)
class Exported:
    """A parsed export: the session document and its records, as the file gave them."""

    session: JsonObject
    records: list[EventRecord]


def header(doc: Mapping[str, object]) -> str:
    """The first line of a JSON-lines export (and the opening of a JSON one)."""
    return jsonio.dumps_str(header_object(doc))


def header_object(doc: Mapping[str, object]) -> JsonObject:
    return {"acpdExport": VERSION, "session": dict(doc)}


def parse(data: bytes) -> Exported:
    """An export file, JSON or JSON lines.

    Raises:
        InvalidInput: not an export of this version, or a record that is malformed, out of order
            or of another session (the message names the line or the record).
    """
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        raise InvalidInput("the body is empty: send a session's export (format json or jsonl)")
    try:
        whole = jsonio.loads(text)  # JSON lines fail at once, at the end of the first line
    except jsonio.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("events"), list):  # the JSON format
        if jsonio.nesting_exceeds(text, whole, jsonio.MAX_NESTING + 2):
            raise InvalidInput(f"the export nests deeper than {jsonio.MAX_NESTING} levels")
        events = whole.pop("events")
        session = _session(whole)
        items = [(index + 1, event) for index, event in enumerate(events)]
        where = "event"
    else:
        lines = text.split("\n")
        session = _session(_json_line(lines[0], 1))
        items = [(number, _json_line(line, number)) for number, line in enumerate(lines[1:], start=2) if line.strip()]
        where = "line"
    session_id = str(session["id"])
    records = [_record(item, session_id, seq, f"{where} {number}") for seq, (number, item) in enumerate(items, start=1)]
    return Exported(session, records)


def _json_line(line: str, number: int) -> JsonObject:
    try:
        value = jsonio.loads(line)
    except jsonio.JSONDecodeError as exc:
        raise InvalidInput(f"line {number}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"line {number}: not a JSON object")
    if jsonio.nesting_exceeds(line, value):
        raise InvalidInput(f"line {number}: nests deeper than {jsonio.MAX_NESTING} levels")
    return value


def _session(head: JsonObject) -> JsonObject:
    if head.get("acpdExport") != VERSION:
        raise InvalidInput(f'line 1: not an acpd export ("acpdExport": {VERSION} expected)')
    session = head.get("session")
    if not isinstance(session, dict) or not isinstance(session.get("id"), str) or not session["id"]:
        raise InvalidInput('line 1: "session" must be the session document, with its "id"')
    if not isinstance(session.get("agent"), str):
        raise InvalidInput('line 1: the session document has no "agent"')
    return session


def _record(item: object, session_id: str, seq: int, where: str) -> EventRecord:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: not a JSON object")
    if item.get("seq") != seq:
        raise InvalidInput(f"{where}: seq {item.get('seq')!r} where {seq} was expected (records are numbered from 1)")
    if item.get("sessionId") != session_id:
        raise InvalidInput(f"{where}: a record of session {item.get('sessionId')!r}, not {session_id!r}")
    sender, turn, at, payload = item.get("sender"), item.get("turn"), item.get("at"), item.get("payload")
    if sender not in ("client", "agent", "daemon"):  # spelled out: the type checker narrows on it
        raise InvalidInput(f"{where}: sender must be one of {sorted(SENDERS)}")
    if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
        raise InvalidInput(f"{where}: turn must be a whole number")
    if not isinstance(at, str) or not at:
        raise InvalidInput(f'{where}: "at" must be the record\'s time')
    if not isinstance(payload, dict) or payload.get("jsonrpc") != "2.0":
        raise InvalidInput(f"{where}: the payload must be a JSON-RPC message")
    return EventRecord(session_id, seq, at, sender, turn, jsonio.dumps_str(payload))


def renamed(records: list[EventRecord], session_id: str) -> list[EventRecord]:
    """The records as session ``session_id``'s: the record's id and its payload's ``sessionId``."""
    old = records[0].session_id if records else session_id
    if old == session_id:
        return records
    out = []
    for record in records:
        payload = record.payload_object()
        params = payload.get("params")
        if isinstance(params, dict) and params.get("sessionId") == old:
            payload["params"] = {**params, "sessionId": session_id}
        out.append(record._replace(session_id=session_id, payload=jsonio.dumps_str(payload)))
    return out
