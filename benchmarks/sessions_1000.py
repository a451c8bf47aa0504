"""Many live sessions on one daemon: what each costs in memory, and what eviction gives back.

A real ``acpd serve`` (SQLite) with ``--model-url`` pointing at the mock model server in this
process. ``--sessions`` sessions of ``--agent`` are created over REST, each answering one prompt
(``mock:text=…``, so the model replies with text), ``--concurrency`` at a time. Then it prints the
daemon's resident and proportional memory (``VmRSS``, ``Pss`` of ``smaps_rollup``) before and after,
the KiB each session added, and for agents that run as processes the proportional memory of the
daemon's descendants (agents and keepers), in all and per session.

A real agent (``--agent claude``, from ``scripts/setup-agents``) is created until ``--sessions``, a
failed create, or the machine's available memory (``MemAvailable``) falling under ``--floor-mib``:
as many as fit. With ``--evict`` the daemon runs with ``--idle-seconds --idle`` and, once every
session is created and measured, the script waits until the sessions have left memory
(``_acpd/session_evicted``) and measures again. Run it inside ``unshare -n``:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/sessions_1000.py --evict'
    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/sessions_1000.py --agent claude \
        --sessions 1000 --concurrency 4 --evict --idle 900'
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import anyio
import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from acpd.testing.daemon import Daemon, running_daemon  # noqa: E402
from acpd.testing.model_server import serve_mock_model  # noqa: E402

AGENTS_DIR: Final = ROOT / ".cache" / "agents"
PROMPT: Final = "mock:text=Hello from the mock model."
REQUEST_TIMEOUT_SECONDS: Final = 180.0
EVICTED: Final = '"_acpd/session_evicted"'


def proc_kib(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return 0  # gone meanwhile
    return 0


def rss_kib(pid: int) -> int:
    return proc_kib(pid, "status", "VmRSS")


def pss_kib(pid: int) -> int:
    return proc_kib(pid, "smaps_rollup", "Pss")


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (agents, their keepers, what they started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Snapshot:
    def __init__(self, daemon: Daemon) -> None:
        pid = daemon.process.pid
        self.rss = rss_kib(pid)
        self.pss = pss_kib(pid)
        tree = descendants(pid)
        self.processes = len(tree)
        self.tree_pss = sum(pss_kib(child) for child in tree)

    def line(self, label: str, *, agents: bool = False) -> str:
        text = f"{label:<28} daemon RSS {self.rss / 1024:7.1f} MiB  PSS {self.pss / 1024:7.1f} MiB"
        if self.processes or agents:
            text += f"  agents: {self.processes} processes, PSS {self.tree_pss / 1024:8.1f} MiB"
        return text


async def one_session(http: httpx.AsyncClient, agent: str, cwd: str) -> str:
    body = {"agent": agent, "cwd": cwd, "policy": {"permissions": "allow"}}
    created = await http.post("/v1/sessions", json=body)
    if created.status_code != 201:
        raise RuntimeError(f"create answered {created.status_code}: {created.text[:300]}")
    session_id = str(created.json()["id"])
    answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": PROMPT})
    if answer.json().get("stopReason") != "end_turn":
        raise RuntimeError(f"prompt answered {answer.status_code}: {answer.text[:300]}")
    return session_id


async def fill(http: httpx.AsyncClient, args: argparse.Namespace, cwd: str) -> tuple[list[str], str]:
    """Create sessions until ``--sessions``, a failure, or the memory floor; why it stopped."""
    created: list[str] = []
    stop: list[str] = []
    next_report = 100
    started = 0

    async def worker() -> None:
        nonlocal next_report, started
        while started < args.sessions and not stop:
            if available_mib() < args.floor_mib:
                stop.append(f"MemAvailable under {args.floor_mib} MiB")
                return
            started += 1
            try:
                created.append(await one_session(http, args.agent, cwd))
            except (RuntimeError, httpx.HTTPError) as exc:
                stop.append(f"session {len(created) + 1} failed: {exc}")
                return
            if len(created) >= next_report:
                next_report += 100
                print(f"  {len(created)} sessions, MemAvailable {available_mib():.0f} MiB", flush=True)

    async with anyio.create_task_group() as tg:
        for _ in range(args.concurrency):
            tg.start_soon(worker)
    return created, stop[0] if stop else f"{args.sessions} sessions asked for"


async def wait_evicted(db: Path, sessions: int, seconds: float) -> int:
    """Wait until ``sessions`` evictions are committed, read from the daemon's SQLite file (any
    request naming a session would bring it back into memory); return how many there were."""
    deadline = time.monotonic() + seconds
    evicted = 0
    while evicted < sessions and time.monotonic() < deadline:
        await anyio.sleep(2.0)
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            query = "SELECT count(*) FROM events WHERE payload LIKE ?"
            evicted = int(connection.execute(query, (f"%{EVICTED}%",)).fetchone()[0])
    return evicted


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as scratch:
        home = Path(scratch)
        (home / "tmp").mkdir()
        (home / "work").mkdir()
        async with serve_mock_model() as model:
            flags = ["--no-auth", "--model-url", model.url, "--agents-dir", str(AGENTS_DIR)]
            flags += ["--max-live-sessions", str(args.sessions + 10)]
            flags += ["--idle-seconds", str(args.idle if args.evict else 0)]
            env = {"TMPDIR": str(home / "tmp")}
            async with (
                running_daemon(home, *flags, env=env) as daemon,
                daemon.client(timeout=REQUEST_TIMEOUT_SECONDS) as http,
            ):
                print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; agent {args.agent}", flush=True)
                await one_session(http, args.agent, str(home / "work"))  # imports and first-use costs
                base = Snapshot(daemon)
                print(base.line("after one session"), flush=True)
                t0 = time.monotonic()
                sessions, why = await fill(http, args, str(home / "work"))
                took = time.monotonic() - t0
                full = Snapshot(daemon)
                count = len(sessions)
                print(f"created {count} sessions in {took:.1f} s ({why})")
                print(full.line(f"{count + 1} live sessions"))
                if count:
                    per = (full.rss - base.rss) / count
                    per_pss = (full.pss - base.pss) / count
                    print(f"per session: daemon RSS {per:.1f} KiB, PSS {per_pss:.1f} KiB", end="")
                    if full.processes:
                        print(f", agents PSS {(full.tree_pss - base.tree_pss) / count / 1024:.1f} MiB", end="")
                    print()
                if args.evict:
                    if took > args.idle:
                        print(f"note: creating took longer than --idle {args.idle}: some had left already")
                    db = home / "data" / "acpd" / "acpd.db"
                    evicted = await wait_evicted(db, count + 1, args.idle * 2 + 120)
                    after = Snapshot(daemon)
                    print(after.line(f"{evicted} sessions evicted", agents=full.processes > 0))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="claude-native")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions to create (default 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="creates in flight at once (default 8)")
    parser.add_argument("--evict", action="store_true", help="then wait for the sessions to leave memory")
    parser.add_argument("--idle", type=float, default=60.0, help="the daemon's --idle-seconds with --evict")
    parser.add_argument(
        "--floor-mib", type=float, default=2048.0, help="stop creating once MemAvailable falls under this"
    )
    anyio.run(main, parser.parse_args())
