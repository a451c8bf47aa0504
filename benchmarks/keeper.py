"""What keeping agents contained costs: N agents held at once by a stand-in daemon.

Each round starts a holder (a Python process that imports ``acpd.transports.process`` as the
daemon does) that spawns ``--agents`` agents one after another through ``open_process_transport``
(each agent: ``sh`` printing a line, then ``cat``), and measures:

- spawn to first line: from the call to the agent's first line read by the holder (median, p90);
- the holder's threads with every agent live (``Threads`` in ``/proc/PID/status``);
- CPU per agent: the keeper processes' (user + system, from ``/proc/PID/stat``; the spawn server's
  start-up included) and the holder's own while spawning, figures the machine's load disturbs less;
- the memory of the keeper processes (everything between the holder and the agents: one keeper
  per agent before, the spawn server and its wardens now), per agent: PSS (shared pages split
  between the processes sharing them) and USS (pages no other process shares), from
  ``/proc/PID/smaps_rollup``.

``--src DIR`` (repeatable) runs the holder from another checkout's ``src`` (through PYTHONPATH),
interleaved round by round, for A/B comparisons on a shared machine (``main``'s checkout against
this one). Run as root or the same user (a non-dumpable server's smaps need CAP_SYS_PTRACE).

    .venv/bin/python benchmarks/keeper.py --agents 100 --rounds 3
    .venv/bin/python benchmarks/keeper.py --agents 100 --rounds 3 --src ../main/src --src src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOLDER = r"""
import json, resource, sys, time
import anyio
from contextlib import AsyncExitStack
from acpd.transports.process import ProcessSpec, open_process_transport

async def main(count):
    spec = ProcessSpec("/bin/sh", ["-c", "echo ready; exec cat"])
    took = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    async with AsyncExitStack() as stack:
        agents = []
        for _ in range(count):
            started = time.perf_counter()
            agent = await stack.enter_async_context(open_process_transport(spec))
            await agent.receive()
            took.append(time.perf_counter() - started)
            agents.append(agent)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        threads = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("Threads:")))
        keepers = [a.pid for a in agents]
        print(json.dumps({"keepers": keepers, "took": took, "threads": threads, "cpu": cpu}), flush=True)
        sys.stdin.readline()  # the benchmark has measured: stop them all

anyio.run(main, int(sys.argv[1]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--src", action="append", help="a checkout's src directory (repeatable); default: this one")
    options = parser.parse_args()
    trees = options.src or [str(Path(__file__).parents[1] / "src")]
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(options.rounds):
        for tree in trees:  # interleaved: the machine's load falls on both alike
            for name, values in one_round(tree, options.agents).items():
                samples[tree][name].extend(values)
    print(f"{options.agents} agents, {options.rounds} rounds; load: {os.getloadavg()[0]:.2f} (1 min)")
    header = ["tree", "keeper PSS/agent", "USS/agent", "keeper CPU/agent", "holder CPU/agent", "holder threads"]
    header += ["spawn→line p50", "p90"]
    print(" | ".join(header))
    for tree, figures in samples.items():
        print(
            " | ".join(
                [
                    tree,
                    f"{statistics.median(figures['pss']) / 1024:.2f} MiB",
                    f"{statistics.median(figures['uss']) / 1024:.2f} MiB",
                    f"{statistics.median(figures['keeper_cpu']) * 1000:.1f} ms",
                    f"{statistics.median(figures['holder_cpu']) * 1000:.1f} ms",
                    f"{statistics.median(figures['threads']):.0f}",
                    f"{statistics.median(figures['took']) * 1000:.1f} ms",
                    f"{percentile(figures['took'], 0.9) * 1000:.1f} ms",
                ]
            )
        )


def one_round(tree: str, count: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": tree}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        report = json.loads(holder.stdout.readline())
        keepers = set(report["keepers"])
        keepers |= {parent for pid in report["keepers"] if (parent := parent_of(pid)) not in (None, holder.pid)}
        pss = uss = 0
        for pid in keepers:
            rollup = smaps_rollup(pid)
            pss += rollup["Pss"]
            uss += rollup["Private_Clean"] + rollup["Private_Dirty"]
        cpu = sum(cpu_seconds(pid) for pid in keepers)
        return {
            "pss": [pss / count],
            "uss": [uss / count],
            "threads": [report["threads"]],
            "took": report["took"],
            "keeper_cpu": [cpu / count],
            "holder_cpu": [report["cpu"] / count],
        }
    finally:
        holder.stdin.close()
        started = time.monotonic()
        while holder.poll() is None and time.monotonic() - started < 30:
            time.sleep(0.05)
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU the process has used so far."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def smaps_rollup(pid: int) -> dict[str, int]:
    """The process's memory figures in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        figures[name] = int(rest.split()[0])
    return figures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


if __name__ == "__main__":
    main()
