"""Where a prompt's CPU goes in acpd: the figures to start from before trying to make it cheaper.

For each face (``--faces``: the REST blocking POST; ACP over HTTP with an SSE reader open, as
``versus.py`` sends them), a fresh daemon (the mock agent, as ``versus.py`` runs it), 20 warm-ups,
then:

1. ``--prompts`` prompts as they run: round trips (median, p90) and the daemon's CPU per prompt,
   split between the event loop's thread and the others (the store's writer and reader);
2. as many again under cProfile (``_profiled.py``, which starts ``acpd serve`` and profiles the
   event loop's thread between two signals): Python calls per prompt, own time per prompt by
   package (acpd's by layer) and the functions with the most own time. The profiler's overhead
   about doubles the times: read them as shares of the prompt, not as its cost.

    .venv/bin/python benchmarks/prompt_profile.py
    .venv/bin/python benchmarks/prompt_profile.py --faces acp --prompts 5000 --top 40
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import signal
import statistics
import sysconfig
import tempfile
from collections import Counter
from pathlib import Path
from typing import Final

import anyio
from _proc import thread_cpu_seconds
from versus import ACPD, WARM_UPS, Bare, Daemon, Prompter, acp_open, daemon, rest_create, server_id, sse_drain, timed

PROFILED: Final = Path(__file__).with_name("_profiled.py")
STDLIB: Final = sysconfig.get_paths()["stdlib"]
LABELS: Final = {"rest": "REST blocking POST", "acp": "ACP-over-HTTP POST, SSE open"}


def package_of(filename: str) -> str:
    """Where a profiled function lives: acpd's layer, a library, the standard library's module, or C."""
    if filename == "~":
        return "built-in (C) functions and methods"
    parts = Path(filename).parts
    if "acpd" in parts:
        below = parts[parts.index("acpd") + 1 :]
        return "acpd." + (below[0].removesuffix(".py") if below else "")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if filename.startswith(STDLIB):
        return "stdlib " + Path(filename).relative_to(STDLIB).parts[0].removesuffix(".py")
    return filename


def short(filename: str) -> str:
    """A profiled file as a reader finds it: from its package on."""
    parts = Path(filename).parts
    for root in ("acpd", "site-packages"):
        if root in parts:
            return "/".join(parts[parts.index(root) + (root == "site-packages") :])
    if filename.startswith(STDLIB):
        return str(Path(filename).relative_to(STDLIB))
    return filename


async def one_face(face: str, args: argparse.Namespace, stats_path: Path) -> None:
    env = {"ACPD_BENCH_PROFILE": str(stats_path)}
    async with daemon(ACPD, None, launcher=PROFILED, env_extra=env) as d, Bare.open(d.url, d.token) as http:
        reader: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        if face == "rest":
            prompter = Prompter(d, http, await rest_create(http, d, str(d.home)), None)
        else:
            server = server_id()
            prompter = Prompter(d, http, await acp_open(http, d, server, str(d.home)), server)
            reader = sse_drain(d, f"/v1/acp/{server}")
        async with reader:
            await timed(prompter, WARM_UPS)
            before = thread_cpu_seconds(d.pid)
            samples = await timed(prompter, args.prompts)
            after = thread_cpu_seconds(d.pid)
            await profiled(d, http, prompter, args.prompts, stats_path)
    report_run(face, samples, before, after, d.pid, args.prompts)
    report_profile(pstats.Stats(str(stats_path)), args.prompts, args.top)


async def profiled(d: Daemon, http: Bare, prompter: Prompter, count: int, stats_path: Path) -> None:
    """``count`` prompts with the daemon's profiler on; its stats in ``stats_path``."""
    os.kill(d.pid, signal.SIGUSR1)
    await http.request("GET", "/v1/health")  # the loop's thread ran its handler by the answer
    await timed(prompter, count)
    os.kill(d.pid, signal.SIGUSR2)
    await http.request("GET", "/v1/health")  # its handler wrote the stats before the answer
    if not await anyio.Path(stats_path).exists():
        raise RuntimeError(f"the daemon wrote no profile to {stats_path}")


def report_run(
    face: str, samples: list[float], before: dict[int, float], after: dict[int, float], pid: int, count: int
) -> None:
    loop_cpu = after.get(pid, 0.0) - before.get(pid, 0.0)
    others = sum(after.values()) - sum(before.values()) - loop_cpu
    ms = sorted(sample * 1000 for sample in samples)
    print(f"\n== {LABELS[face]}: {count} prompts; 1-minute load {os.getloadavg()[0]:.2f}")
    print(f"round trip: median {statistics.median(ms):.3f} ms, p90 {ms[int(len(ms) * 0.9)]:.3f} ms")
    print(
        f"daemon CPU per prompt: {(loop_cpu + others) / count * 1000:.3f} ms (the event loop's thread"
        f" {loop_cpu / count * 1000:.3f} ms, the other threads {others / count * 1000:.3f} ms; 10 ms ticks)"
    )


def report_profile(stats: pstats.Stats, count: int, top: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]  # (filename, line, name) -> (cc, nc, tt, ct, callers)
    by_package: Counter[str] = Counter()
    calls = 0
    rows = []
    for (filename, line, function), (_, ncalls, own, _, _) in entries.items():
        by_package[package_of(filename)] += own
        calls += ncalls
        rows.append((own, ncalls, f"{short(filename)}:{line} {function}"))
    total = sum(by_package.values())
    print(
        f"profiled ({count} prompts, the event loop's thread): {calls / count:.0f} Python calls a prompt"
        " (a coroutine's every resumption counts as one)"
    )
    print("own time per prompt, by package:")
    for package, own in by_package.most_common(top):
        print(f"  {own / count * 1e6:8.1f} us {own / total * 100:5.1f} %  {package}")
    print("the functions with the most own time, per prompt:")
    for own, ncalls, where in sorted(rows, reverse=True)[:top]:
        print(f"  {own / count * 1e6:8.1f} us {ncalls / count:6.1f} calls  {where}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", default="rest,acp", help="comma-separated, from rest,acp")
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25, help="how many packages and functions to list")
    args = parser.parse_args()
    faces = [face for face in args.faces.split(",") if face]
    if unknown := set(faces) - set(LABELS):
        parser.error(f"unknown faces: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="acpd-profile-") as tmp:
        for face in faces:
            await one_face(face, args, Path(tmp) / f"{face}.prof")


if __name__ == "__main__":
    anyio.run(main)
