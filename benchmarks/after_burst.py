"""Prompt round trips right after a long turn, while the daemon catches up on what it left for later.

A turn of ``--chunks`` chunks (100,000 by default) commits its records at once, and leaves to the
store's background work what can wait: the record indexes (turns, tool calls, full-text search),
which the writer catches up on between commits, a slice at a time, and the WAL's checkpoints. This
script measures what that costs the prompts that come next: on a fresh daemon (the mock agent, as
``versus.py`` runs it) it times ``--prompts`` one-chunk REST prompts in a row, then one long turn,
then a prompt every 2 ms for ``--seconds`` seconds, and prints their round trips by window of time
after the long turn (median and max), beside the steady ones.

``--src DIR`` (repeatable) runs the daemons from another checkout's ``src`` (through PYTHONPATH),
round by round interleaved with the others, for A/B comparisons on a shared machine.

    .venv/bin/python benchmarks/after_burst.py --runs 3
    .venv/bin/python benchmarks/after_burst.py --runs 4 --src ../before/src --src src
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import anyio
import orjson
from versus import ACPD, WARM_UPS, Bare, Prompter, daemon, ok_json, rest_create, timed

WINDOWS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
"""Where each window of time after the long turn starts (s); each runs to the next."""


async def one_run(src: str | None, args: argparse.Namespace) -> dict[str, list[float]]:
    """Round trips (ms) of one fresh daemon: ``steady``, then one list per window after the burst."""
    found: dict[str, list[float]] = defaultdict(list)
    async with daemon(ACPD, None, src=src) as d, Bare.open(d.url, d.token) as http:
        session_id = await rest_create(http, d, str(d.home))
        prompt = Prompter(d, http, session_id, None)
        await timed(prompt, WARM_UPS)
        found["steady"] = [sample * 1000 for sample in await timed(prompt, args.prompts)]
        long_turn = orjson.dumps({"prompt": f"chunks {args.chunks}"})
        ok_json(*await http.request("POST", f"/v1/sessions/{session_id}/prompt", long_turn))
        ended = time.perf_counter()
        while (since := time.perf_counter() - ended) < args.seconds:
            t0 = time.perf_counter()
            await prompt()
            found[window_of(since)].append((time.perf_counter() - t0) * 1000)
            await anyio.sleep(0.002)
    return found


def window_of(since: float) -> str:
    start = max(w for w in WINDOWS if w <= since)
    later = [w for w in WINDOWS if w > start]
    return f"{start:.2f}-{later[0]:.2f} s" if later else f"{start:.2f} s on"


def report(label: str, runs: list[dict[str, list[float]]]) -> None:
    print(f"\n== {label}: {len(runs)} run(s); the runs' medians [min-max], and the max of all")
    for key in ["steady", *(window_of(w) for w in WINDOWS)]:
        medians = [statistics.median(run[key]) for run in runs if run.get(key)]
        if not medians:
            continue
        worst = max(max(run[key]) for run in runs if run.get(key))
        count = sum(len(run.get(key, [])) for run in runs)
        name = "steady, before the long turn" if key == "steady" else f"after it, {key}"
        spread = f"{statistics.median(medians):6.2f} [{min(medians):.2f}-{max(medians):.2f}]"
        print(f"  {name:34s} round trip {spread} ms, max {worst:6.2f} ms (n={count})")


async def measure(trees: list[str | None], args: argparse.Namespace) -> None:
    results: dict[str | None, list[dict[str, list[float]]]] = {tree: [] for tree in trees}
    for index in range(args.runs):
        for tree in trees if index % 2 == 0 else trees[::-1]:
            results[tree].append(await one_run(tree, args))
    for tree in trees:
        report(tree or "this checkout", results[tree])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh daemons per tree")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks of the long turn")
    parser.add_argument("--prompts", type=int, default=200, help="steady prompts before the long turn")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long to prompt after it")
    parser.add_argument("--src", action="append", help="run acpd from this src directory (repeat to compare)")
    args = parser.parse_args()
    trees: list[str | None] = [str(Path(src).resolve()) for src in args.src] if args.src else [None]
    anyio.run(measure, trees, args, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
