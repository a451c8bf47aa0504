"""Benchmark: the PostgreSQL store beside SQLite: the store's append rate, and a daemon's
end-to-end events/s (mock agent -> acpd -> SSE client), interleaved rounds on each; then the delay
of a log followed from another store (another daemon's) on the same database, from a commit's
return on the writer to its delivery by the reader's ``follow`` (p50/p99).

PostgreSQL is a throwaway server started for the run (``initdb`` into a temporary directory, on
127.0.0.1, with ``fsync`` on: as durable as a real one on this disk), unless ``--postgres URL``
names one (its tables are made in a new schema and dropped at the end). SQLite is a fresh file in a
temporary directory. Prints each round and the medians, with the machine's load.

    .venv/bin/python benchmarks/postgres.py [--records 100000] [--batch 1000] [--chunks 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
from _daemon import acpd_daemon
from store_append import make_records
from throughput import ID_LINE, one_run

from acpd.protocol.events import EventRecord
from acpd.store import SqliteEventStore
from acpd.store.base import EventStore
from acpd.store.postgres import PostgresEventStore
from acpd.testing import postgres

KINDS: Final = ("sqlite", "postgres")


@asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """``dsn`` with a new schema first on its search path, dropped afterwards."""
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def append_rate(store: EventStore, records: list[EventRecord], batch: int) -> float:
    """Records/s appending ``records`` in batches of ``batch`` (one transaction each)."""
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        await store.append(records[start : start + batch])
    return len(records) / (time.perf_counter() - started)


async def store_round(kind: str, dsn: str, records: list[EventRecord], batch: int) -> float:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="acpd-bench-") as directory:
            async with await SqliteEventStore.open(Path(directory) / "acpd.db") as store:
                return await append_rate(store, records, batch)
    async with fresh_schema(dsn) as url, await PostgresEventStore.open(url) as pg:
        return await append_rate(pg, records, batch)


async def stream_round(kind: str, dsn: str, chunks: int) -> float:
    """Events/s of one turn of ``chunks`` chunks through a fresh daemon on ``kind``'s store."""
    if kind == "sqlite":
        async with acpd_daemon() as url:
            seconds, received, errors, expected, _ = await one_run(url, chunks, 0.0)
    else:
        async with fresh_schema(dsn) as db, acpd_daemon("--db", db) as url:
            seconds, received, errors, expected, _ = await one_run(url, chunks, 0.0)
    if errors or received != expected:
        sys.exit(f"{kind}: {expected - received} events lost, {errors} gaps or repeats")
    return received / seconds


async def follow_delays(dsn: str, commits: int, pace: float) -> tuple[list[float], list[float]]:
    """Seconds from each commit's start on a writer store (daemon A's), and from its return there,
    to its delivery by a reader store's ``follow`` (daemon B's), a commit of 10 records every
    ``pace`` seconds."""
    async with (
        fresh_schema(dsn) as url,
        await PostgresEventStore.open(url) as writer,
        await PostgresEventStore.open(url, writer=False) as reader,
    ):
        begun: dict[int, float] = {}
        committed: dict[int, float] = {}
        delivered: dict[int, float] = {}

        async def follow() -> None:
            async for batch in reader.follow("session-0"):  # make_records' one session
                now = time.perf_counter()
                for record in batch:  # a batch may carry several commits: each commit's last seq
                    delivered.setdefault(record.seq, now)
                if batch[-1].seq >= commits * 10:
                    return

        records = make_records(commits * 10, 1)
        with anyio.fail_after(30 + commits * pace * 3):  # bounded, whatever the reader does
            await _timed(writer, follow, records, (begun, committed), pace)
    # a delivery before the writer's append returned counts as 0: B saw it no later than A could
    return (
        [delivered[seq] - at for seq, at in begun.items()],
        [max(0.0, delivered[seq] - at) for seq, at in committed.items()],
    )


async def _timed(
    writer: PostgresEventStore,
    follow: Callable[[], Coroutine[Any, Any, None]],
    records: list[EventRecord],
    times: tuple[dict[int, float], dict[int, float]],
    pace: float,
) -> None:
    """Append ``records`` 10 at a time while ``follow`` runs; each commit's start and return."""
    begun, committed = times
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        for start in range(0, len(records), 10):
            begun[start + 10] = time.perf_counter()
            await writer.append(records[start : start + 10])
            committed[start + 10] = time.perf_counter()
            await anyio.sleep(pace)


async def arrivals(url: str, session_id: str, until: int, into: dict[int, float]) -> None:
    """When each event of the session's stream through ``url`` arrived, by seq, through ``until``."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as http,
        http.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response,
    ):
        tail = b""
        async for raw in response.aiter_raw():
            now = time.perf_counter()
            data = tail + raw
            cut = data.rfind(b"\n\n") + 2 if b"\n\n" in data else 0
            complete, tail = data[:cut], data[cut:]
            for match in ID_LINE.finditer(complete):
                into[int(match.group(1))] = now
            if into and max(into) >= until:
                return


async def daemon_delays(dsn: str, chunks: int) -> list[float]:
    """Seconds from each event's delivery through daemon A's stream (A serves the session: it
    delivers once it has committed) to its delivery through daemon B's (B follows the table), for
    one turn of ``chunks`` chunks, two daemons sharing the database (``--share-db``)."""
    async with (
        fresh_schema(dsn) as db,
        acpd_daemon("--db", db, "--share-db") as a,
        acpd_daemon("--db", db, "--share-db") as b,
        httpx.AsyncClient(base_url=a, timeout=None) as http,
    ):
        session_id = (await http.post("/v1/sessions", json={"agent": "mock"})).json()["id"]
        start = (await http.get(f"/v1/sessions/{session_id}")).json()["lastSeq"]
        through_a: dict[int, float] = {}
        through_b: dict[int, float] = {}
        last = start + chunks + 2  # the prompt, the chunks, the answer
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(arrivals, a, session_id, last, through_a)
                tg.start_soon(arrivals, b, session_id, last, through_b)
                await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": f"chunks {chunks}"})
    return [through_b[seq] - through_a[seq] for seq in through_a if seq > start and seq in through_b]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.2f} ms"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(dsn: str, args: argparse.Namespace) -> None:
    records = make_records(args.records, args.sessions)
    appends: dict[str, list[float]] = {kind: [] for kind in KINDS}
    streams: dict[str, list[float]] = {kind: [] for kind in KINDS}
    print(f"load before: {load()}")
    for round_no in range(args.runs):
        order = KINDS if round_no % 2 == 0 else KINDS[::-1]  # who goes first alternates
        for kind in order:
            appends[kind].append(await store_round(kind, dsn, records, args.batch))
            streams[kind].append(await stream_round(kind, dsn, args.chunks))
            print(
                f"round {round_no + 1} {kind:>8}: append {appends[kind][-1]:,.0f} records/s"
                f" (batch {args.batch}); a turn of {args.chunks} chunks {streams[kind][-1]:,.0f} events/s;"
                f" load {load()}"
            )
    for kind in KINDS:
        print(
            f"{kind:>8} medians: append {statistics.median(appends[kind]):,.0f} records/s"
            f" [{min(appends[kind]):,.0f}-{max(appends[kind]):,.0f}],"
            f" end to end {statistics.median(streams[kind]):,.0f} events/s"
            f" [{min(streams[kind]):,.0f}-{max(streams[kind]):,.0f}], 0 lost"
        )
    from_start, from_return = await follow_delays(dsn, args.follow_commits, 0.005)
    print(
        f"cross-daemon stream ({len(from_start)} commits of 10 records, one every 5 ms), delivery through B"
        f" after the commit began on A: p50 {ms(from_start, 0.5)}, p99 {ms(from_start, 0.99)}, max {ms(from_start, 1)};"
        f" after A had it committed: p50 {ms(from_return, 0.5)}, p99 {ms(from_return, 0.99)} (0: B had it first)"
    )
    delays = await daemon_delays(dsn, args.chunks)
    print(
        f"two daemons sharing the database, one turn of {args.chunks} chunks streamed through both:"
        f" delivery through B after delivery through A (the owner): p50 {ms(delays, 0.5)}, p99 {ms(delays, 0.99)},"
        f" max {ms(delays, 1)} over {len(delays)} events"
    )
    print(f"load after: {load()}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--follow-commits", type=int, default=2_000, help="commits the cross-daemon stream is timed on")
    parser.add_argument("--postgres", help="a PostgreSQL URL to use instead of a throwaway server")
    args = parser.parse_args()
    if args.postgres:
        await run(args.postgres, args)
        return
    with postgres.running(durable=True) as cluster:
        await run(cluster.dsn, args)


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
