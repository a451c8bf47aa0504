"""End-to-end throughput: mock agent -> acpd (SQLite, durable before visible) -> SSE client.

The mock agent emits N agent_message_chunk updates in one turn; an SSE client subscribed to the
session counts every event it receives, checks that seqs have no gap and no repeat, and times from
the prompt to the turn's last event. ``--reader-delay`` throttles the reader to show that a slow
reader loses nothing (it is served from the store when it falls behind).

    .venv/bin/python benchmarks/throughput.py --chunks 100000 --runs 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Final

import anyio
import httpx
from _daemon import acpd_daemon

ID_LINE: Final = re.compile(rb"^id: (\d+)$", re.MULTILINE)
END_MARK: Final = b'"stopReason"'


async def prompt(http: httpx.AsyncClient, session_id: str, text: str) -> None:
    await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})


async def one_run(url: str, chunks: int, reader_delay: float) -> tuple[float, int, int, int, float]:
    """Return (seconds, events received, gaps or repeats, events expected, seconds to the first event)."""
    async with httpx.AsyncClient(base_url=url, timeout=None) as http:
        session = (await http.post("/v1/sessions", json={"agent": "mock"})).json()
        sid = session["id"]
        start_seq = session["lastSeq"]
        received = 0
        errors = 0
        expected_next = start_seq + 1
        t0 = 0.0
        elapsed = 0.0
        first = 0.0
        async with (
            http.stream("GET", f"/v1/sessions/{sid}/events/stream", params={"after": start_seq}) as response,
            anyio.create_task_group() as tg,
        ):
            t0 = time.perf_counter()
            tg.start_soon(prompt, http, sid, f"chunks {chunks}")
            tail = b""
            async for raw in response.aiter_raw():
                data = tail + raw
                cut = data.rfind(b"\n\n") + 2 if b"\n\n" in data else 0
                complete, tail = data[:cut], data[cut:]
                for match in ID_LINE.finditer(complete):
                    if not received:
                        first = time.perf_counter() - t0
                    seq = int(match.group(1))
                    errors += seq != expected_next
                    expected_next = seq + 1
                    received += 1
                if END_MARK in complete:
                    elapsed = time.perf_counter() - t0
                    break
                if reader_delay:
                    await anyio.sleep(reader_delay)
        expected = (await http.get(f"/v1/sessions/{sid}")).json()["lastSeq"] - start_seq
        return elapsed, received, errors, expected, first


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reader-delay", type=float, default=0.0, help="seconds to pause after each read")
    parser.add_argument("--url", help="use a running daemon (started with --no-auth) instead of starting one")
    args = parser.parse_args()
    rates = []
    if args.url:
        runs = [await one_run(args.url, args.chunks, args.reader_delay) for _ in range(args.runs)]
    else:
        async with acpd_daemon() as url:
            runs = [await one_run(url, args.chunks, args.reader_delay) for _ in range(args.runs)]
    for i, (seconds, received, errors, expected, first) in enumerate(runs, 1):
        rate = received / seconds
        rates.append(rate)
        lost = expected - received
        print(
            f"run {i}: {received} events in {seconds:.3f} s = {rate:,.0f} events/s; "
            f"lost {lost}, gaps/repeats {errors}; "
            f"first event {first * 1000:.1f} ms after the prompt"
        )
    print(f"median: {statistics.median(rates):,.0f} events/s over {len(rates)} runs of {args.chunks} chunks")


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
