"""Session create on a warm agent: REST, ACP-over-HTTP ``session/new`` and WebSocket ``session/new``
(each on one initialized connection), a burst of concurrent creates, and the memory each live
session costs (the daemon and every process under it). The daemon's CPU per create is its
utime + stime over the run (10 ms ticks), the mock agent's not counted.

Each side starts its own daemon (``--no-auth``, SQLite in a temp dir) with the mock agent; the
first session is created and discarded from the figures (it starts the agent: a cold create).
Run it A/B by running the same file with another checkout first on ``PYTHONPATH``:

    .venv/bin/python benchmarks/sessions.py --creates 30 --burst 200
    PYTHONPATH=<other checkout>/src .venv/bin/python benchmarks/sessions.py --creates 30 --burst 40
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from _proc import cpu_seconds, descendants, rss_kib
from websockets.asyncio.client import ClientConnection, connect

from acpd.testing.daemon import running_daemon


def tree(pid: int) -> tuple[int, int]:
    """(processes, RSS in KiB) of ``pid`` and every descendant."""
    found = [pid, *descendants(pid)]
    return len(found), sum(rss_kib(p) for p in found)


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(len(ordered) * q) - 1)] * 1000

    return f"median {statistics.median(ordered) * 1000:.2f} ms, p90 {at(0.9):.2f} ms, p99 {at(0.99):.2f} ms"


def cpu_each(pid: int, cpu0: float, count: int) -> str:
    return f"daemon CPU {(cpu_seconds(pid) - cpu0) / count * 1000:.2f} ms each"


async def ws_creates(url: str, cwd: str, creates: int) -> list[float]:
    """``session/new`` on one initialized WebSocket connection (``/v1/rpc``)."""
    samples = []
    async with connect(url.replace("http://", "ws://") + "/v1/rpc?agent=mock", compression=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": 1}}))
        await ws_answer(ws, 0)
        for number in range(1, creates + 1):
            request = {
                "jsonrpc": "2.0",
                "id": number,
                "method": "session/new",
                "params": {"cwd": cwd, "mcpServers": []},
            }
            t0 = time.perf_counter()
            await ws.send(json.dumps(request))
            answer = await ws_answer(ws, number)
            samples.append(time.perf_counter() - t0)
            assert "result" in answer, answer
    return samples


async def ws_answer(ws: ClientConnection, request_id: int) -> dict[str, object]:
    while True:  # the sessions' own updates (their commands) come on the same connection
        message = json.loads(await ws.recv())
        if message.get("id") == request_id and "method" not in message:
            return dict(message)


async def measure(http: httpx.AsyncClient, url: str, pid: int, cwd: str, creates: int, burst: int) -> None:
    t0 = time.perf_counter()
    (await http.post("/v1/sessions", json={"agent": "mock", "cwd": cwd})).raise_for_status()
    print(f"first create (agent cold): {(time.perf_counter() - t0) * 1000:.1f} ms")
    await anyio.sleep(1.0)  # let a spare, if any, finish starting
    base_processes, base_rss = tree(pid)
    rest = []
    cpu0 = cpu_seconds(pid)
    for _ in range(creates):
        t0 = time.perf_counter()
        (await http.post("/v1/sessions", json={"agent": "mock", "cwd": cwd})).raise_for_status()
        rest.append(time.perf_counter() - t0)
    print(f"REST POST /v1/sessions: {ms(rest)}, {cpu_each(pid, cpu0, creates)} (n={creates})")
    path = "/v1/acp/bench-sessions?agent=mock"
    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": 1}}
    (await http.post(path, json=initialize)).raise_for_status()
    acp = []
    cpu0 = cpu_seconds(pid)
    for number in range(creates):
        message = {
            "jsonrpc": "2.0",
            "id": number + 1,
            "method": "session/new",
            "params": {"cwd": cwd, "mcpServers": []},
        }
        t0 = time.perf_counter()
        answer = await http.post(path, json=message)
        acp.append(time.perf_counter() - t0)
        assert "result" in answer.json(), answer.text
    print(f"ACP-over-HTTP session/new: {ms(acp)}, {cpu_each(pid, cpu0, creates)} (n={creates})")
    cpu0 = cpu_seconds(pid)
    ws = await ws_creates(url, cwd, creates)
    print(f"WebSocket session/new: {ms(ws)}, {cpu_each(pid, cpu0, creates)} (n={creates})")
    failures = 0
    each: list[float] = []

    async def create() -> None:
        nonlocal failures
        started = time.perf_counter()
        response = await http.post("/v1/sessions", json={"agent": "mock", "cwd": cwd})
        each.append(time.perf_counter() - started)
        failures += response.status_code != 201

    t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
    async with anyio.create_task_group() as tg:
        for _ in range(burst):
            tg.start_soon(create)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    print(f"{burst} concurrent creates: {wall:.2f} s, daemon CPU {cpu:.2f} s ({failures} failed); each {ms(each)}")
    await anyio.sleep(1.0)
    processes, rss = tree(pid)
    sessions = 3 * creates + burst
    print(
        f"memory per live session: {(rss - base_rss) / sessions:,.0f} KiB "
        f"({processes - base_processes} more processes for {sessions} more sessions; tree {rss / 1024:,.0f} MiB)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=30)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as home:
        async with (
            running_daemon(Path(home), "--no-auth") as daemon,
            httpx.AsyncClient(base_url=daemon.url, timeout=120, limits=httpx.Limits(max_connections=None)) as http,
        ):
            print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            await measure(http, daemon.url, daemon.process.pid, home, args.creates, args.burst)


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
