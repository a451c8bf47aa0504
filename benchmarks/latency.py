"""Latency: session create (spawns the mock agent) and prompt round trip, against a real daemon.

A round trip is one blocking ``POST /v1/sessions/{id}/prompt`` of a one-chunk turn: HTTP in, the
prompt recorded, sent to the agent, its update and answer recorded and committed, HTTP out.

    .venv/bin/python benchmarks/latency.py --prompts 500 --sessions 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio
import httpx
from _daemon import acpd_daemon


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{name}: median {statistics.median(ordered) * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms (n={len(ordered)})"


async def measure(url: str, prompts: int, sessions: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        creates = []
        for _ in range(sessions):
            t0 = time.perf_counter()
            response = await http.post("/v1/sessions", json={"agent": "mock"})
            creates.append(time.perf_counter() - t0)
            response.raise_for_status()
        session_id = response.json()["id"]
        for _ in range(20):  # warm up
            await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text hi"})
        rounds = []
        for _ in range(prompts):
            t0 = time.perf_counter()
            response = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "text hi"})
            rounds.append(time.perf_counter() - t0)
            assert response.json()["stopReason"] == "end_turn"
        print(summary("session create (spawn mock agent + initialize + session/new)", creates))
        print(summary("prompt round trip (blocking POST, one chunk)", rounds))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--url", help="use a running daemon (started with --no-auth) instead of starting one")
    args = parser.parse_args()
    if args.url:
        await measure(args.url, args.prompts, args.sessions)
    else:
        async with acpd_daemon() as url:
            await measure(url, args.prompts, args.sessions)


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
