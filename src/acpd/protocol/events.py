"""Protocol layer: the event record every session log is made of. Pure; no I/O.

A record is kept with its payload as JSON text, exactly as it will be served: the hot path
(agent line -> store -> SSE) never re-parses a payload, and the record's own JSON is built by
concatenation rather than by a second encode.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal, NamedTuple

from acpd.protocol import jsonio

Sender = Literal["client", "agent", "daemon"]


@lru_cache(maxsize=4096)
def quoted(session_id: str) -> str:
    """A session id as a JSON string (cached: ids repeat, once per record)."""
    return jsonio.dumps_str(session_id)


class EventRecord(NamedTuple):
    """One entry of a session's append-only log; immutable.

    ``seq`` starts at 1 and has no gaps within a session; ``payload`` is one JSON-RPC message,
    as JSON text, whose ``params.sessionId`` (when present) is the daemon's session id. A named
    tuple, not a frozen dataclass: one is made per event, and a frozen dataclass's ``__init__``
    (a ``object.__setattr__`` per field) cost four times as much.
    """

    session_id: str
    seq: int
    at: str
    sender: Sender
    turn: int
    payload: str

    def to_json(self) -> str:
        """The wire form: ``{"seq","sessionId","at","sender","turn","payload"}``."""
        return self.to_json_quoted(quoted(self.session_id))

    def to_json_quoted(self, quoted_session_id: str) -> str:
        """``to_json``, given the session id as a JSON string (the same for a batch of one log's)."""
        return (
            f'{{"seq":{self.seq},"sessionId":{quoted_session_id},"at":"{self.at}",'
            f'"sender":"{self.sender}","turn":{self.turn},"payload":{self.payload}}}'
        )

    def payload_object(self) -> jsonio.JsonObject:
        value = jsonio.loads(self.payload)
        assert isinstance(value, dict)
        return value


class _Clock:
    """Formats the current time at most once per millisecond: a burst of events shares one string."""

    __slots__ = ("_ms", "_text")

    def __init__(self) -> None:
        self._ms = -1
        self._text = ""

    def now(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms = ms
            moment = datetime.fromtimestamp(ms / 1000, UTC)
            self._text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self._text


utc_now = _Clock().now
"""RFC 3339 UTC timestamp with millisecond precision, e.g. ``2026-11-22T10:00:00.123Z``."""
