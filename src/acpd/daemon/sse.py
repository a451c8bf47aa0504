"""Daemon layer: Server-Sent Events encoding of a session log followed live.

Records are written in batches (one body chunk per batch), because the per-write cost of the
HTTP server, not the encoding, bounds throughput. No routing here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

from acpd.errors import StoreError
from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, quoted

from .log import SessionLog
from .problems import problem_body

KEEPALIVE_SECONDS: Final = 15.0
BATCH_RECORDS: Final = 5_000
KEEPALIVE: Final = b": keep-alive\n\n"
HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode(records: Sequence[EventRecord]) -> bytes:
    """Each record whole (seq, sender, turn, payload): the REST event stream. The records are
    one log's, so their session id is quoted once."""
    if not records:
        return b""
    sid = quoted(records[0].session_id)
    return "".join([f"id: {r.seq}\ndata: {r.to_json_quoted(sid)}\n\n" for r in records]).encode()


def encode_problem(exc: StoreError) -> bytes:
    """An ``event: error`` whose data is the problem object (RFC 9457) the request would have got."""
    body = problem_body(exc.status, exc.kind, exc.message, data=exc.data)
    return f"event: error\ndata: {jsonio.dumps_str(body)}\n\n".encode()


def encode_messages(records: Sequence[EventRecord]) -> bytes:
    """Each record's JSON-RPC message only, as ``event: message``: the ACP-over-HTTP stream
    (sandbox-agent's wire format, which its SDK parses)."""
    return "".join([f"event: message\nid: {r.seq}\ndata: {r.payload}\n\n" for r in records]).encode()


async def stream_log(
    log: SessionLog,
    after: int,
    *,
    until: Callable[[int], bool] = lambda seq: False,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    encoder: Callable[[Sequence[EventRecord]], bytes] = encode,
    stop_on_fault: bool = False,
) -> AsyncIterator[bytes]:
    """SSE bytes for every committed record after ``after``, live; ends when ``until(seq)`` holds for a
    sent record, or when the log closes (the session was deleted or the daemon stops). While the
    store fails (a full disk) the stream waits for the records to commit, or, with
    ``stop_on_fault``, ends with an ``error`` event (a turn's stream: the turn fails too)."""
    yield b"retry: 1000\n\n"
    follow = log.follow(after, batch=BATCH_RECORDS, idle_seconds=keepalive_seconds, stop_on_fault=stop_on_fault)
    try:
        async for records in follow:
            if not records:
                yield KEEPALIVE
                continue
            stop_at = next((i for i, r in enumerate(records) if until(r.seq)), None)
            if stop_at is not None:
                yield encoder(records[: stop_at + 1])
                return
            yield encoder(records)
    except StoreError as exc:
        yield encode_problem(exc)
