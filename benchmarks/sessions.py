"""Session create on a warm agent: REST and ACP-over-HTTP ``session/new``, a burst of concurrent
creates, and the memory each live session costs (the daemon and every process under it).

Each side starts its own daemon (``--no-auth``, SQLite in a temp dir) with the mock agent; the
first session is created and discarded from the figures (it starts the agent: a cold create).
Run it A/B by running the same file with another checkout first on ``PYTHONPATH``:

    .venv/bin/python benchmarks/sessions.py --creates 30 --burst 200
    PYTHONPATH=<other checkout>/src .venv/bin/python benchmarks/sessions.py --creates 30 --burst 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from acpd.testing.daemon import running_daemon


def children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(pid: int) -> tuple[int, int]:
    """(processes, RSS in KiB) of ``pid`` and every descendant."""
    children, todo, found = children_of(), [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return len(found), sum(rss_kib(p) for p in found)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the daemon process itself (its agents not counted)."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (
        f"median {statistics.median(ordered) * 1000:.2f} ms, p90 {ordered[int(len(ordered) * 0.9) - 1] * 1000:.2f} ms"
    )


async def measure(http: httpx.AsyncClient, pid: int, cwd: str, creates: int, burst: int) -> None:
    t0 = time.perf_counter()
    (await http.post("/v1/sessions", json={"agent": "mock", "cwd": cwd})).raise_for_status()
    print(f"first create (agent cold): {(time.perf_counter() - t0) * 1000:.1f} ms")
    await anyio.sleep(1.0)  # let a spare, if any, finish starting
    base_processes, base_rss = tree(pid)
    rest = []
    for _ in range(creates):
        t0 = time.perf_counter()
        (await http.post("/v1/sessions", json={"agent": "mock", "cwd": cwd})).raise_for_status()
        rest.append(time.perf_counter() - t0)
    print(f"REST POST /v1/sessions: {ms(rest)} (n={creates})")
    path = "/v1/acp/bench-sessions?agent=mock"
    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": 1}}
    (await http.post(path, json=initialize)).raise_for_status()
    acp = []
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
    print(f"ACP-over-HTTP session/new: {ms(acp)} (n={creates})")
    failures = 0

    async def create() -> None:
        nonlocal failures
        response = await http.post("/v1/sessions", json={"agent": "mock", "cwd": cwd})
        failures += response.status_code != 201

    t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
    async with anyio.create_task_group() as tg:
        for _ in range(burst):
            tg.start_soon(create)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    print(f"{burst} concurrent creates: {wall:.2f} s, daemon CPU {cpu:.2f} s ({failures} failed)")
    await anyio.sleep(1.0)
    processes, rss = tree(pid)
    sessions = 2 * creates + burst
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
            await measure(http, daemon.process.pid, home, args.creates, args.burst)


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
