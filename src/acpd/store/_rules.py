"""Store layer: the rules every store shares: seq continuity, indexed session keys, cursors, limits.

Pure functions over records and documents, so the memory twin and SQLite accept, reject and page
alike. Imports nothing of acpd but the protocol layer and errors.
"""

from __future__ import annotations

import base64
import binascii
import operator
from collections.abc import Callable, Sequence
from typing import Final

from acpd.errors import InvalidInput, StoreError
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionPage
from acpd.store.docs import SessionKeys

CURSOR_ALTCHARS: Final = b"-_"
"""URL-safe base64: a cursor travels in a query string unescaped."""


def next_last_seqs(records: Sequence[EventRecord], last_seq: Callable[[str], int]) -> dict[str, int]:
    """Check that ``records`` continue their sessions' logs; return each touched session's new last seq.

    Records of several sessions may interleave in one batch; within a session they must read
    ``last_seq(session) + 1, + 2, …`` in batch order. ``last_seq`` is called once per session.

    Raises:
        StoreError: a seq that is not the next one of its session: a gap, a duplicate, or a new
            log that does not start at 1. The caller then writes nothing.
    """
    if records:  # the common batch, one session's run of seqs, checked in C
        session_id, first = records[0].session_id, records[0].seq
        base = last_seq(session_id)
        if (
            first == base + 1
            # cheap first: a round of several sessions' records skips the whole-batch checks
            and records[-1].session_id == session_id
            and records[-1].seq == first + len(records) - 1
            and len(set(map(_SESSION_ID, records))) == 1
            and list(map(_SEQ, records)) == list(range(first, first + len(records)))
        ):
            return {session_id: first + len(records) - 1}
        last_seq = _knowing(last_seq, session_id, base)
    expected: dict[str, int] = {}
    for record in records:
        session_id = record.session_id
        want = expected.get(session_id)
        if want is None:
            want = last_seq(session_id) + 1
        if record.seq != want:
            raise StoreError(
                f"seq {record.seq} does not continue the log of session {session_id!r}: expected {want}",
                data={"sessionId": session_id, "seq": record.seq, "expected": want},
            )
        expected[session_id] = want + 1
    return {session_id: following - 1 for session_id, following in expected.items()}


_SESSION_ID: Final = operator.itemgetter(0)
"""A record's ``session_id`` (a record is a tuple of its columns)."""
_SEQ: Final = operator.itemgetter(1)


def _knowing(last_seq: Callable[[str], int], session_id: str, value: int) -> Callable[[str], int]:
    """``last_seq``, with ``session_id``'s already asked: each session's is asked once."""
    return lambda asked: value if asked == session_id else last_seq(asked)


def encode_cursor(keys: SessionKeys) -> str:
    """An opaque cursor that resumes a listing after ``keys``' session (keyset pagination)."""
    raw = jsonio.dumps([keys.created_at, keys.id])
    return base64.b64encode(raw, altchars=CURSOR_ALTCHARS).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The ``(createdAt, id)`` position a cursor resumes after.

    Raises:
        InvalidInput: the cursor was not made by ``encode_cursor``.
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=CURSOR_ALTCHARS, validate=True)
        value = jsonio.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("malformed cursor: pass back the nextCursor of a previous page") from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
        raise InvalidInput("malformed cursor: pass back the nextCursor of a previous page")
    return (value[0], value[1])


def check_read_limit(limit: int) -> None:
    """Raises ``InvalidInput`` for a negative event ``limit`` (0 reads nothing)."""
    if limit < 0:
        raise InvalidInput(f"limit must be 0 or more, got {limit}")


def check_page_limit(limit: int) -> None:
    """Raises ``InvalidInput`` for a session page ``limit`` below 1 (an empty page could not resume)."""
    if limit < 1:
        raise InvalidInput(f"limit must be 1 or more, got {limit}")


def page_of(rows: list[tuple[SessionKeys, str]], limit: int) -> SessionPage:
    """Build a page from up to ``limit + 1`` matching rows in listing order; the extra row only
    proves that another page exists."""
    shown = rows[:limit]
    next_cursor = encode_cursor(shown[-1][0]) if len(rows) > limit else None
    return SessionPage(items=[jsonio.loads(text) for _, text in shown], next_cursor=next_cursor)
