"""Daemon layer: Server-Sent Events encoding of event records, and the live follow loop.

Records are written in batches (one body chunk per batch), because the per-write cost of the
HTTP server, not the encoding, bounds throughput. No routing here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import anyio

from acpd.protocol.events import EventRecord

from .log import SessionLog

KEEPALIVE_SECONDS: Final = 15.0
BATCH_RECORDS: Final = 5_000
KEEPALIVE: Final = b": keep-alive\n\n"
HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode(records: Sequence[EventRecord]) -> bytes:
    return "".join([f"id: {r.seq}\ndata: {r.to_json()}\n\n" for r in records]).encode()


async def stream_log(
    log: SessionLog,
    after: int,
    *,
    until: Callable[[int], bool] = lambda seq: False,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[bytes]:
    """SSE bytes for every committed record after ``after``, live; ends when ``until(seq)`` holds for a
    sent record, or when the log closes (the session was deleted or the daemon stops)."""
    cursor = after
    yield b"retry: 1000\n\n"
    while True:
        records = await log.read(cursor, BATCH_RECORDS)
        if records:
            stop_at = next((i for i, r in enumerate(records) if until(r.seq)), None)
            if stop_at is not None:
                yield encode(records[: stop_at + 1])
                return
            cursor = records[-1].seq
            yield encode(records)
            continue
        if log.closed:
            return
        with anyio.move_on_after(keepalive_seconds) as scope:
            await log.wait_beyond(cursor)
        if scope.cancelled_caught:
            yield KEEPALIVE
