"""Benchmark: how many event records per second ``SqliteEventStore.append`` commits.

Appends small records (a ``session/update`` chunk of about 200 bytes), spread over a few
sessions, in batches of each size given, to a fresh SQLite file in a temporary directory, and
prints records/s per batch size. The clock covers only the ``append`` calls (one transaction
each), not building the records.

    .venv/bin/python benchmarks/store_append.py [--records 200000] [--batch 1000 5000] [--sessions 8]
        [--pad-bytes 0]

``--pad-bytes`` adds that many bytes of text to each payload, to see how larger events (tool
output) change the rate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Final

import anyio

from acpd.protocol import jsonio
from acpd.protocol.events import EventRecord, utc_now
from acpd.store import SqliteEventStore

DEFAULT_RECORDS: Final = 200_000
DEFAULT_BATCHES: Final = (1_000, 5_000)
DEFAULT_SESSIONS: Final = 8


def make_records(count: int, sessions: int, pad_bytes: int = 0) -> list[EventRecord]:
    """``count`` records round-robin over ``sessions`` sessions, each log continuing from 1."""
    at = utc_now()
    records = []
    for index in range(count):
        session_id = f"session-{index % sessions}"
        payload = jsonio.dumps_str(
            {
                "jsonrpc": "2.0",
                "method": "session/update",
                "params": {
                    "sessionId": session_id,
                    "update": {
                        "sessionUpdate": "agent_message_chunk",
                        "content": {"type": "text", "text": f"chunk {index} of the agent's answer" + "x" * pad_bytes},
                    },
                },
            }
        )
        records.append(EventRecord(session_id, index // sessions + 1, at, "agent", 1, payload))
    return records


async def measure(path: Path, records: list[EventRecord], batch: int) -> float:
    """Seconds spent appending ``records`` in batches of ``batch`` to a new store at ``path``."""
    async with await SqliteEventStore.open(path) as store:
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            await store.append(records[start : start + batch])
        return time.perf_counter() - started


async def main(count: int, batches: list[int], sessions: int, pad_bytes: int) -> None:
    records = make_records(count, sessions, pad_bytes)
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as directory:
        for batch in batches:
            seconds = await measure(Path(directory) / f"batch-{batch}.db", records, batch)
            print(f"batch {batch:>6}: {count} records in {seconds:.3f} s = {count / seconds:,.0f} records/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--batch", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS)
    parser.add_argument("--pad-bytes", type=int, default=0)
    args = parser.parse_args()
    anyio.run(main, args.records, args.batch, args.sessions, args.pad_bytes)
