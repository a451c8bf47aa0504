"""Records: audit queries over N tool calls and search over S sessions, against a real daemon.

The daemon is filled through its own import route: S sessions, each a JSON-lines export of T turns
with C tool calls a turn (one in three asked permission of the client), so the indexes are built as
the daemon builds them. Then each query is timed R times: an audit page, a filtered audit page, the
stats, the whole audit as CSV, and a full-text search for a rare word and for a common one.

    .venv/bin/python benchmarks/records.py --sessions 1000 --turns 2 --calls 5 --runs 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import httpx

from acpd.testing.daemon import running_daemon

KINDS = ("read", "edit", "execute", "search", "fetch")


def export_of(index: int, turns: int, calls: int) -> bytes:
    """A session's JSON-lines export: ``turns`` turns of ``calls`` tool calls each."""
    session_id = f"bench-{index:05d}"
    at = "2026-12-01T10:00:00.000Z"
    lines: list[dict[str, Any]] = []

    def add(sender: str, turn: int, payload: dict[str, Any]) -> None:
        lines.append({"seq": len(lines) + 1, "sessionId": session_id, "at": at, "sender": sender, "turn": turn,
                      "payload": {"jsonrpc": "2.0", **payload}})  # fmt: skip

    for turn in range(1, turns + 1):
        words = f"session {index} turn {turn}" + (" kumquat" if index % 100 == 0 else "")
        prompt = {"sessionId": session_id, "prompt": [{"type": "text", "text": words}]}
        add("client", turn, {"id": f"turn-{turn}", "method": "session/prompt", "params": prompt})
        for call in range(calls):
            tool_id = f"t{turn}-{call}"
            update = {"sessionUpdate": "tool_call", "toolCallId": tool_id, "title": f"step {call}",
                      "kind": KINDS[call % len(KINDS)], "status": "pending"}  # fmt: skip
            add("agent", turn, {"method": "session/update", "params": {"sessionId": session_id, "update": update}})
            if call % 3 == 0:
                request = {"sessionId": session_id, "toolCall": {"toolCallId": tool_id},
                           "options": [{"optionId": "allow", "name": "Allow", "kind": "allow_once"}]}  # fmt: skip
                add("agent", turn, {"id": call, "method": "session/request_permission", "params": request})
                add("client", turn, {"id": call, "result": {"outcome": {"outcome": "selected", "optionId": "allow"},
                                                            "_meta": {"acpd": {"decidedBy": "client"}}}})  # fmt: skip
            done = {"sessionUpdate": "tool_call_update", "toolCallId": tool_id, "status": "completed"}
            add("agent", turn, {"method": "session/update", "params": {"sessionId": session_id, "update": done}})
        chunk = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": f"done with {words}"}}
        add("agent", turn, {"method": "session/update", "params": {"sessionId": session_id, "update": chunk}})
        add("agent", turn, {"id": f"turn-{turn}", "result": {"stopReason": "end_turn"}})
    head = {"acpdExport": 1, "session": {"id": session_id, "agent": "mock", "title": f"bench {index}"}}
    return "\n".join(json.dumps(line) for line in [head, *lines]).encode()


async def timed(runs: int, call: Callable[[], Coroutine[Any, Any, httpx.Response]]) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = await call()
        samples.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
    return samples


async def main(sessions: int, turns: int, calls: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as home:
        async with (
            running_daemon(Path(home), "--no-auth") as daemon,
            httpx.AsyncClient(base_url=daemon.url, timeout=600) as http,
        ):
            t0 = time.perf_counter()
            for index in range(sessions):
                body = export_of(index, turns, calls)
                (await http.post("/v1/sessions/import", content=body, params={"cwd": home})).raise_for_status()
            filled = time.perf_counter() - t0
            total = (await http.get("/v1/audit/stats")).json()["total"]["toolCalls"]
            print(f"{sessions:,} sessions, {total:,} tool calls imported in {filled:.1f} s; {runs} runs each")
            queries: dict[str, Callable[[], Coroutine[Any, Any, httpx.Response]]] = {
                "audit: first page of 100": lambda: http.get("/v1/audit/tool-calls", params={"limit": 100}),
                "audit: kind=edit, decidedBy=client": lambda: http.get(
                    "/v1/audit/tool-calls", params={"kind": "edit", "decidedBy": "client", "limit": 100}
                ),
                "audit: stats": lambda: http.get("/v1/audit/stats"),
                "audit: all as CSV": lambda: http.get("/v1/audit/tool-calls", params={"format": "csv"}),
                "search: a rare word": lambda: http.get("/v1/sessions", params={"q": "kumquat"}),
                "search: a word in every session": lambda: http.get("/v1/sessions", params={"q": "turn"}),
            }
            print("min / median / max (ms)")
            for name, query in queries.items():
                samples = await timed(runs, query)
                print(f"  {min(samples):8.2f} {statistics.median(samples):8.2f} {max(samples):8.2f}  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, args.sessions, args.turns, args.calls, args.runs)
