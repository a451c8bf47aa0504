"""Export: a session of N events out of a real daemon, in each format, and the daemon's memory meanwhile.

One turn of N chunks is recorded, then each format is downloaded R times; the figures are the
events exported per second and the daemon's RSS before the export and at its peak during it
(sampled every 5 ms), so memory that grows with the session's length shows.

    .venv/bin/python benchmarks/export.py --events 100000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from _proc import rss_kib

from acpd.testing.daemon import running_daemon

FORMATS = ("jsonl", "json", "markdown")


async def peak_rss(pid: int, peak: list[int], done: anyio.Event) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        with anyio.move_on_after(0.005):
            await done.wait()


async def export_once(http: httpx.AsyncClient, session_id: str, fmt: str, pid: int) -> tuple[float, int, int]:
    before = rss_kib(pid)
    peak = [before]
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(peak_rss, pid, peak, done)
        t0 = time.perf_counter()
        async with http.stream("GET", f"/v1/sessions/{session_id}/export", params={"format": fmt}) as response:
            response.raise_for_status()
            async for _ in response.aiter_bytes():
                pass
        elapsed = time.perf_counter() - t0
        done.set()
    return elapsed, before, peak[0] - before


async def main(events: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as home:
        async with running_daemon(Path(home), "--no-auth") as daemon:
            pid = daemon.process.pid
            async with httpx.AsyncClient(base_url=daemon.url, timeout=600) as http:
                session_id = (await http.post("/v1/sessions", json={"agent": "mock"})).json()["id"]
                await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": f"chunks {events}"})
                total = (await http.get(f"/v1/sessions/{session_id}")).json()["lastSeq"]
                print(f"session of {total:,} events; {runs} runs per format; min / median / max")
                for fmt in FORMATS:
                    rates, growth = [], []
                    for _ in range(runs):
                        elapsed, before, grew = await export_once(http, session_id, fmt, pid)
                        rates.append(total / elapsed)
                        growth.append(grew / 1024)
                    print(
                        f"{fmt:>9}: {min(rates):>9,.0f} {statistics.median(rates):>9,.0f} {max(rates):>9,.0f} events/s;"
                        f" RSS {before / 1024:.1f} MiB before, peak growth"
                        f" {min(growth):.1f} / {statistics.median(growth):.1f} / {max(growth):.1f} MiB"
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.events, args.runs)
