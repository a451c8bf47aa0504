"""Start-up and idle cost of a real ``acpd serve`` (fresh data directory, SQLite), and of the
commands editors and users spawn.

Each round starts two daemons on fresh data directories and measures:

- cold start: from spawning ``acpd serve`` to the first 200 on ``/v1/health`` (the daemon
  reports its port through ``--port-file`` the moment it listens; the GET follows at once), and
  the CPU the daemon spent until then (a figure the machine's load disturbs less);
- idle RSS after start, and after creating and deleting ``--sessions`` mock sessions;
- the first session create after start (it imports the agents' configuration: pydantic and the
  presets), and the median of the later ones;
- SIGTERM to exit, idle (the first daemon) and after the sessions (the second);
- ``acpd acp`` relaying to the running daemon: spawn to the answer of ``initialize``;
- ``acpd sessions list`` against it: spawn to exit.

A warm-up round per tree comes first (uncounted): it writes the bytecode, so that acpd starts as
an installed one does (PYTHONDONTWRITEBYTECODE is dropped from the daemons' environment).

Then it prints the 15 biggest imports (cumulative) of ``acpd serve`` until healthy (``-X
importtime``), their total, and any heavy package among them (pydantic, anthropic, the ACP schema
package, httpx, websockets, click, acpd.config, acpd.presets, the test kit, and what only the
session engine imports: permissions, the agents' views, the adapters' base), so a heavy import that
comes back shows. ``--src DIR`` (repeatable) runs the daemons from another
checkout's ``src`` (through PYTHONPATH), interleaved round by round with the others, for A/B
comparisons on a shared machine. ``--config`` starts every daemon with a config file that defines
a custom agent (``[agents.pymock]``, the mock agent), as ``versus.py`` runs acpd: a config file is
read and checked at start, which must stay light too. ``--floor`` also starts, each round, the HTTP
stack alone with one health route (``_stack_floor.py``: uvloop, anyio, uvicorn, Starlette, orjson,
sqlite3, as acpd loads them): the floor under acpd's own start on the machine.

    .venv/bin/python benchmarks/startup.py --runs 10
    .venv/bin/python benchmarks/startup.py --runs 10 --config
    .venv/bin/python benchmarks/startup.py --runs 10 --src ../other-checkout/src --src src
    .venv/bin/python benchmarks/startup.py --runs 10 --floor
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from anyio.abc import Process

from acpd.private import read_token, token_path
from acpd.protocol import jsonio
from acpd.testing.daemon import daemon_env

START_TIMEOUT_SECONDS = 30.0
FLOOR = (str(Path(__file__).with_name("_stack_floor.py")),)
"""``--floor``: the HTTP stack alone, with one health route (``_stack_floor.py``)."""
CONFIG_FILE = False
"""``--config``: start every daemon with ``custom_agent_config``'s file."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Samples = dict[str, list[float]]


@dataclass
class Serving:
    process: Process
    url: str
    home: Path
    env: dict[str, str]

    @property
    def token(self) -> str | None:
        return read_token(token_path(self.home / "data" / "acpd"))  # where daemon_env puts the data


def tree_env(home: Path, src: str | None) -> dict[str, str]:
    env = daemon_env(home)
    env.pop("COVERAGE_PROCESS_START", None)
    # As an installed acpd runs: from bytecode (a warm-up round writes it), not compiling its
    # sources at every start as PYTHONDONTWRITEBYTECODE would have it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    return env


def custom_agent_config(home: Path) -> list[str]:
    """A config file defining one custom agent, as ``versus.py`` writes it; the flags naming it."""
    path = home / "acpd.toml"
    args = jsonio.dumps_str(["-m", "acpd.testing.mock_agent"])
    path.write_text(f"[agents.pymock]\ncommand = {jsonio.dumps_str(sys.executable)}\nargs = {args}\n")
    return ["--config", str(path)]


@asynccontextmanager
async def serving(
    src: str | None, samples: Samples, *, extra: tuple[str, ...] = (), program: tuple[str, ...] = ("-m", "acpd")
) -> AsyncIterator[Serving]:
    """A fresh ``acpd serve`` (``program``: another program taking its arguments, the stack floor);
    records its cold start (wall and CPU) in ``samples``."""
    with tempfile.TemporaryDirectory(prefix="acpd-startup-") as tmp:
        home = Path(tmp)
        env = tree_env(home, src)
        ready_read, ready_write = os.pipe()
        command = [
            sys.executable,
            *extra,
            *program,
            "serve",
            "--port",
            "0",
            "--port-file",
            f"/dev/fd/{ready_write}",
            *(custom_agent_config(home) if CONFIG_FILE and program != FLOOR else ()),
        ]
        with (home / "daemon.log").open("wb") as log:
            t0 = time.perf_counter()
            process = await anyio.open_process(command, stdout=log, stderr=log, env=env, pass_fds=(ready_write,))
        os.close(ready_write)
        try:
            with anyio.fail_after(START_TIMEOUT_SECONDS):
                line = await anyio.to_thread.run_sync(os.read, ready_read, 64, abandon_on_cancel=True)
                port = int(line)
                await health(port)
            samples["cold start to healthy (ms)"].append((time.perf_counter() - t0) * 1000)
            samples["CPU used until healthy (ms)"].append(cpu_ms(process.pid))
            yield Serving(process, f"http://127.0.0.1:{port}", home, env)
        finally:
            os.close(ready_read)
            if process.returncode is None:
                process.kill()
                await process.wait()


async def health(port: int) -> None:
    """One bare HTTP/1.0 GET of /v1/health (no client library between us and the figure)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET /v1/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while True:
                answer += await stream.receive()
        except anyio.EndOfStream:
            pass
    if not answer.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise RuntimeError(f"health answered {answer[:80]!r}")


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def sigterm_ms(process: Process) -> float:
    t0 = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(START_TIMEOUT_SECONDS):
        code = await process.wait()
    if code != 0:
        raise RuntimeError(f"acpd serve exited {code} on SIGTERM")
    return (time.perf_counter() - t0) * 1000


async def mock_sessions(daemon: Serving, count: int, samples: Samples) -> None:
    """Creates and deletes ``count`` mock sessions; records how long the first create took (it
    imports the agents' configuration: pydantic and the presets) and the median of the others."""
    headers = {"Authorization": f"Bearer {daemon.token}"}
    creates = []
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers, timeout=60) as http:
        for _ in range(count):
            t0 = time.perf_counter()
            created = await http.post("/v1/sessions", json={"agent": "mock", "cwd": str(daemon.home)})
            creates.append((time.perf_counter() - t0) * 1000)
            created.raise_for_status()
            (await http.delete(f"/v1/sessions/{created.json()['id']}")).raise_for_status()
    samples["first mock session create after start (ms)"].append(creates[0])
    if len(creates) > 1:
        samples["later mock session creates, median (ms)"].append(statistics.median(creates[1:]))


async def relay_ms(daemon: Serving) -> float:
    """``acpd acp`` relaying to ``daemon``: spawn to the answer of ``initialize``."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}
    command = [sys.executable, "-m", "acpd", "acp", "--url", daemon.url]
    t0 = time.perf_counter()
    async with await anyio.open_process(command, env=daemon.env, stderr=subprocess.DEVNULL) as process:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(jsonio.dumps(request) + b"\n")
        answer = b""
        with anyio.fail_after(START_TIMEOUT_SECONDS):
            while b"\n" not in answer:
                answer += await process.stdout.receive()
        elapsed = (time.perf_counter() - t0) * 1000
        if b'"result"' not in answer:
            raise RuntimeError(f"initialize answered {answer[:200]!r}")
        await process.stdin.aclose()
        await process.wait()
    return elapsed


async def cli_ms(daemon: Serving) -> float:
    """``acpd sessions list`` against ``daemon``: spawn to exit."""
    t0 = time.perf_counter()
    done = await anyio.run_process(
        [sys.executable, "-m", "acpd", "sessions", "list", "--url", daemon.url], env=daemon.env, check=True
    )
    del done
    return (time.perf_counter() - t0) * 1000


async def one_round(src: str | None, samples: Samples, sessions: int) -> None:
    async with serving(src, samples) as idle:
        samples["idle RSS after start (MiB)"].append(rss_mib(idle.process.pid))
        samples["SIGTERM to exit, idle (ms)"].append(await sigterm_ms(idle.process))
    async with serving(src, samples) as busy:
        await mock_sessions(busy, sessions, samples)
        samples[f"idle RSS after {sessions} mock sessions (MiB)"].append(rss_mib(busy.process.pid))
        samples["acpd acp relay: spawn to initialize answer (ms)"].append(await relay_ms(busy))
        samples["acpd sessions list: spawn to exit (ms)"].append(await cli_ms(busy))
        samples["SIGTERM to exit, after sessions (ms)"].append(await sigterm_ms(busy.process))


HEAVY = (
    "pydantic",
    "anthropic",
    "acp",
    "httpx",
    "websockets",
    "click",
    "acpd.config",
    "acpd.presets",
    "acpd.testing",
    "acpd.daemon.permissions",
    "acpd.daemon.acp_views",
    "acpd.adapters.base",
)
"""What an idle daemon must not have imported (tests/daemon/test_startup.py checks it too): the
configuration's models, the SDKs and clients, and what only the session engine imports (the
engine's own modules are imported without running, so -X importtime does not list them)."""


async def import_times(src: str | None) -> list[tuple[int, int, str]]:
    """Every import of a real ``acpd serve`` until healthy: (cumulative µs, self µs, name)."""
    samples: Samples = defaultdict(list)
    async with serving(src, samples, extra=("-X", "importtime")) as daemon:
        await sigterm_ms(daemon.process)
        lines = (daemon.home / "daemon.log").read_text().splitlines()
    rows = []
    for line in lines:
        if line.startswith("import time:") and "self [us]" not in line:
            own, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative), int(own), name.rstrip()))
    return rows


def print_imports(rows: list[tuple[int, int, str]], top: int) -> None:
    total = sum(own for _, own, _ in rows)
    print(f"\nimports of acpd serve until healthy (-X importtime): {len(rows)} modules, {total / 1000:.1f} ms in all")
    acpd = [own for _, own, name in rows if name.strip() == "acpd" or name.strip().startswith("acpd.")]
    own_ms = sum(acpd) / 1000
    print(f"of which acpd's own: {len(acpd)} modules, {own_ms:.1f} ms (self; the rest: the stdlib and the HTTP stack)")
    print("biggest, cumulative and self (ms):")
    for cumulative, own, name in sorted(rows, reverse=True)[:top]:
        print(f"{cumulative / 1000:8.1f} {own / 1000:8.1f}  {name}")
    names = {name.strip() for _, _, name in rows}
    heavy = [h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names)]
    print(f"heavy packages imported (should be none): {', '.join(heavy) or 'none'}")


def spread(values: list[float]) -> str:
    return f"{min(values):8.1f} {statistics.median(values):8.1f} {max(values):8.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="rounds (each starts two daemons per tree)")
    parser.add_argument("--sessions", type=int, default=5, help="mock sessions created and deleted per round")
    parser.add_argument("--src", action="append", help="run acpd from this src directory (repeat to compare)")
    parser.add_argument("--imports", type=int, default=15, help="how many of the biggest imports to print")
    parser.add_argument("--config", action="store_true", help="start every daemon with a config file (a custom agent)")
    parser.add_argument(
        "--floor", action="store_true", help="also start the HTTP stack alone each round (_stack_floor.py)"
    )
    args = parser.parse_args()
    global CONFIG_FILE
    CONFIG_FILE = args.config
    trees: list[str | None] = list(args.src or [None])
    results: dict[str | None, Samples] = {tree: defaultdict(list) for tree in trees}
    for tree in trees:  # writes the bytecode; not counted
        await one_round(tree, defaultdict(list), 1)
    floor: Samples = defaultdict(list)
    load_before = os.getloadavg()
    for _ in range(args.runs):
        for tree in trees:
            await one_round(tree, results[tree], args.sessions)
        if args.floor:
            async with serving(None, floor, program=FLOOR):
                pass
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    for tree in trees:
        with_config = " with a config file (a custom agent)" if args.config else ""
        print(f"\n== acpd from {tree or 'the installed package'}{with_config}: {args.runs} rounds; min / median / max")
        for name, values in results[tree].items():
            print(f"{spread(values)}  {name}")
        print_imports(await import_times(tree), args.imports)
    if args.floor:
        print(f"\n== the HTTP stack alone, one health route (_stack_floor.py): {args.runs} rounds; min / median / max")
        for name, values in floor.items():
            print(f"{spread(values)}  {name}")


if __name__ == "__main__":
    anyio.run(main)
