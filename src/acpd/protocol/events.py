"""Protocol layer: the event record every session log is made of. Pure; no I/O.

A record is kept with its payload as JSON text, exactly as it will be served: the hot path
(agent line -> store -> SSE) never re-parses a payload, and the record's own JSON is built by
concatenation rather than by a second encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from acpd.protocol import jsonio

Sender = Literal["client", "agent", "daemon"]
SENDERS: tuple[Sender, ...] = ("client", "agent", "daemon")


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a session's append-only log.

    ``seq`` starts at 1 and has no gaps within a session; ``payload`` is one JSON-RPC message,
    as JSON text, whose ``params.sessionId`` (when present) is the daemon's session id.
    """

    session_id: str
    seq: int
    at: str
    sender: Sender
    turn: int
    payload: str

    def to_json(self) -> str:
        """The wire form: ``{"seq","sessionId","at","sender","turn","payload"}``."""
        return (
            f'{{"seq":{self.seq},"sessionId":{jsonio.dumps_str(self.session_id)},"at":"{self.at}",'
            f'"sender":"{self.sender}","turn":{self.turn},"payload":{self.payload}}}'
        )

    def payload_object(self) -> jsonio.JsonObject:
        value = jsonio.loads(self.payload)
        assert isinstance(value, dict)
        return value


def utc_now() -> str:
    """RFC 3339 UTC timestamp with millisecond precision, e.g. ``2026-11-22T10:00:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
