"""Daemon layer: Server-Sent Events encoding of a session log followed live.

Records are written in batches (one body chunk per batch), because the per-write cost of the
HTTP server, not the encoding, bounds throughput. No routing here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

from acpd.protocol.events import EventRecord

from .log import SessionLog

KEEPALIVE_SECONDS: Final = 15.0
BATCH_RECORDS: Final = 5_000
KEEPALIVE: Final = b": keep-alive\n\n"
HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode(records: Sequence[EventRecord]) -> bytes:
    """Each record whole (seq, sender, turn, payload): the REST event stream."""
    return "".join([f"id: {r.seq}\ndata: {r.to_json()}\n\n" for r in records]).encode()


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
) -> AsyncIterator[bytes]:
    """SSE bytes for every committed record after ``after``, live; ends when ``until(seq)`` holds for a
    sent record, or when the log closes (the session was deleted or the daemon stops)."""
    yield b"retry: 1000\n\n"
    async for records in log.follow(after, batch=BATCH_RECORDS, idle_seconds=keepalive_seconds):
        if not records:
            yield KEEPALIVE
            continue
        stop_at = next((i for i, r in enumerate(records) if until(r.seq)), None)
        if stop_at is not None:
            yield encoder(records[: stop_at + 1])
            return
        yield encoder(records)
