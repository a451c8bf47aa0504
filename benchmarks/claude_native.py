"""claude-native through a real daemon, against the mock model server: acpd's own Claude loop, per turn and per step.

A real ``acpd serve`` (SQLite) with ``--model-url`` pointing at the mock model server, which runs in
this process; sessions over REST with ``permissions: allow``. Each figure is a median of ``--runs``:

- session create (claude-native spawns no process);
- a text-only prompt round trip, against the same request answered by the mock model server
  straight through the ``anthropic`` SDK (``client.messages.stream``, a warm client): acpd's share
  of a turn;
- a tool prompt (the model calls Write on a small file, then replies), and the same two requests
  sent straight: acpd's share per tool step;
- a turn of ``--steps`` tool steps (Read and Glob in turn), then a reply, per model call; and
  once, the last such turn of a ``--history``-step conversation (its requests are the longest);
- one reply of ``--deltas`` text deltas (the mock model streams text 16 characters a delta), counted
  as ``agent_message_chunk`` events on the session's SSE stream; the SDK reading the same stream
  straight, and the mock model server's raw SSE, for scale;
- after a daemon restart: its first ``WARM_PROMPTS`` prompts (a young process's one-off costs),
  then that ``--history``-step session's first prompt (its conversation rebuilt from SQLite), its
  second, and a fresh session's first prompt;
- the daemon's resident memory (``VmRSS``) after the workload, per idle session, and after a
  restart and rebuild.

A new daemon gets ``WARM_PROMPTS`` prompts before the per-turn figures, so they are a settled
process's. The "SDK direct" column runs the SDK in this process, beside the mock model server, so
the two take turns on one core where through acpd they overlap a little: "acpd's share" errs low.
This process's start-up objects are frozen (``gc.freeze``) so that its own full garbage collections
stay off the figures. Run it inside ``unshare -n`` to be sure nothing leaves the machine:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/claude_native.py --runs 5'
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
from anthropic import AsyncAnthropic

from acpd.presets import PLACEHOLDER_KEY
from acpd.testing.daemon import Daemon, running_daemon
from acpd.testing.model_server import MockModelServer, Reply, ToolCall, serve_mock_model

AGENT: Final = "claude-native"
TEXT_PROMPT: Final = "mock:text=Hello from the mock model."
DELTA_TEXT: Final = "0123456789abcde "
"""One delta's worth: the mock model server streams text 16 characters at a time."""
CHUNK_MARK: Final = b'"agent_message_chunk"'
DELTA_MARK: Final = b'"text_delta"'
END_MARK: Final = b'"stopReason"'
PROMPT_TIMEOUT_SECONDS: Final = 60.0
WARM_PROMPTS: Final = 30
"""Prompts a new daemon gets before anything else is timed: enough, here, to be past the process's
first full garbage collection (~0.1 s), which would otherwise land on whichever figure comes then."""


@dataclass
class Samples:
    """Every measurement by name (seconds, unless the name says otherwise), in the order taken."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])


@dataclass
class Bench:
    """One daemon's REST client, the mock model server, and an SDK client of its own to it."""

    http: httpx.AsyncClient
    model: MockModelServer
    sdk: AsyncAnthropic
    work: Path

    async def create(self) -> tuple[float, dict[str, Any]]:
        body = {"agent": AGENT, "cwd": str(self.work), "policy": {"permissions": "allow"}}
        t0 = time.perf_counter()
        response = await self.http.post("/v1/sessions", json=body)
        elapsed = time.perf_counter() - t0
        assert response.status_code == 201, response.text
        return elapsed, dict(response.json())

    async def session(self) -> str:
        return str((await self.create())[1]["id"])

    async def prompt(self, session_id: str, text: str) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        with anyio.fail_after(PROMPT_TIMEOUT_SECONDS):
            response = await self.http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
        elapsed = time.perf_counter() - t0
        answer = dict(response.json())
        assert answer.get("stopReason") == "end_turn", response.text
        return elapsed, answer

    async def scripted(self, session_id: str, text: str, replies: Sequence[Reply]) -> tuple[float, list[Any]]:
        """Time a prompt whose model calls get ``replies`` (then the mock's default: text after a tool
        result), and return the bodies the daemon sent the model, for ``direct``."""
        self.model.clear()
        self.model.push(*replies)
        elapsed, _ = await self.prompt(session_id, text)
        return elapsed, [request.body for request in self.model.requests]

    async def direct(self, bodies: Sequence[Any], replies: Sequence[Reply] = ()) -> tuple[float, int]:
        """Send ``bodies`` to the mock model straight through the SDK, the same replies queued; return
        the time taken and the text deltas seen."""
        self.model.clear()
        self.model.push(*replies)
        deltas = 0
        t0 = time.perf_counter()
        for body in bodies:
            params = {key: value for key, value in body.items() if key != "stream"}
            async with self.sdk.messages.stream(**params) as stream:
                async for event in stream:
                    deltas += event.type == "text"
                await stream.get_final_message()
        return time.perf_counter() - t0, deltas

    async def raw(self, body: Any, reply: Reply) -> tuple[float, int]:
        """The mock model's stream alone: bytes read and ``text_delta`` events counted, nothing parsed."""
        self.model.clear()
        self.model.push(reply)
        async with httpx.AsyncClient(base_url=self.model.url) as plain:
            t0 = time.perf_counter()
            async with plain.stream("POST", "/v1/messages", json=body) as response:
                deltas = await count_events(response.aiter_raw(), DELTA_MARK)
            return time.perf_counter() - t0, deltas

    async def streamed(self, reply: Reply) -> tuple[float, int, list[Any]]:
        """Time one prompt in a fresh session answered by ``reply``, as its SSE stream shows it: from
        the POST to the turn's answer; return the text chunks counted on the way, and the bodies."""
        _, created = await self.create()
        session_id = created["id"]
        self.model.clear()
        self.model.push(reply)
        url = f"/v1/sessions/{session_id}/events/stream"
        async with (
            self.http.stream("GET", url, params={"after": created["lastSeq"]}) as response,
            anyio.create_task_group() as group,
        ):
            t0 = time.perf_counter()
            group.start_soon(self.prompt, session_id, "Say a lot")
            chunks = await count_events(response.aiter_raw(), CHUNK_MARK, until=END_MARK)
            elapsed = time.perf_counter() - t0
        return elapsed, chunks, [request.body for request in self.model.requests]


async def count_events(stream: AsyncIterator[bytes], mark: bytes, *, until: bytes | None = None) -> int:
    """The SSE events of ``stream`` that contain ``mark``, up to the first that contains ``until``
    (else to the stream's end)."""
    count, tail = 0, b""
    async for raw in stream:
        data = tail + raw
        end = data.rfind(b"\n\n")
        complete, tail = (data[: end + 2], data[end + 2 :]) if end >= 0 else (b"", data)
        count += complete.count(mark)
        if until is not None and until in complete:
            break
    return count


def write_call(index: int) -> Reply:
    return Reply(tool=ToolCall(name="Write", input={"path": f"note-{index}.txt", "content": "hello\n"}))


def search_steps(steps: int) -> list[Reply]:
    read = Reply(tool=ToolCall(name="Read", input={"path": "a.txt"}))
    glob = Reply(tool=ToolCall(name="Glob", input={"pattern": "*.txt"}))
    return [read if step % 2 == 0 else glob for step in range(steps)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@asynccontextmanager
async def bench_on(home: Path, model: MockModelServer, sdk: AsyncAnthropic) -> AsyncIterator[tuple[Bench, Daemon]]:
    """A daemon on ``home``'s SQLite file (the same one each time: a restart) and a Bench for it."""
    async with (
        running_daemon(home, "--model-url", model.url) as daemon,
        daemon.client(timeout=PROMPT_TIMEOUT_SECONDS) as http,
    ):
        yield Bench(http, model, sdk, home / "work"), daemon


async def one_run(bench: Bench, samples: Samples, args: argparse.Namespace, run: int) -> None:
    """Each per-turn figure once."""
    elapsed, created = await bench.create()
    samples.add("create", elapsed)
    session_id = created["id"]
    await bench.prompt(session_id, TEXT_PROMPT)  # a conversation's first request is not the usual one
    elapsed, bodies = await bench.scripted(session_id, TEXT_PROMPT, [])
    samples.add("text", elapsed)
    samples.add("text direct", (await bench.direct(bodies))[0])

    write = [write_call(run)]
    elapsed, bodies = await bench.scripted(session_id, "Write a note", write)
    samples.add("tool", elapsed)
    samples.add("tool direct", (await bench.direct(bodies, write))[0])

    steps = search_steps(args.steps)
    elapsed, bodies = await bench.scripted(await bench.session(), "Look around", steps)
    samples.add("steps", elapsed)
    samples.add("steps direct", (await bench.direct(bodies, steps))[0])

    reply = Reply(text=DELTA_TEXT * args.deltas)
    elapsed, chunks, bodies = await bench.streamed(reply)
    samples.add("stream", elapsed)
    samples.add("stream chunks", chunks)
    elapsed, deltas = await bench.direct(bodies, [reply])
    samples.add("stream direct", elapsed)
    samples.add("stream direct deltas", deltas)
    elapsed, deltas = await bench.raw(bodies[0], reply)
    samples.add("stream raw", elapsed)
    samples.add("stream raw deltas", deltas)


async def long_session(bench: Bench, samples: Samples, args: argparse.Namespace) -> str:
    """A session with ``--history`` tool steps in its log, ``--steps`` a prompt; its last turn
    (the longest requests) is timed, once."""
    session_id = await bench.session()
    done = 0
    while done < args.history:
        steps = search_steps(min(args.steps, args.history - done))
        elapsed, bodies = await bench.scripted(session_id, f"Look around, part {done // args.steps + 1}", steps)
        done += len(steps)
    calls = len(bodies)
    samples.add("deep body bytes", max(request.body_bytes for request in bench.model.requests))
    samples.add("deep steps", elapsed / calls)
    samples.add("deep steps direct", (await bench.direct(bodies, steps))[0] / calls)
    return session_id


async def warm_up(bench: Bench) -> list[float]:
    """``WARM_PROMPTS`` text prompts in a fresh session; their times."""
    session_id = await bench.session()
    return [(await bench.prompt(session_id, TEXT_PROMPT))[0] for _ in range(WARM_PROMPTS)]


async def after_restart(bench: Bench, samples: Samples, old_session: str) -> None:
    """On a daemon just started on the same SQLite file: its first ``WARM_PROMPTS`` prompts, in a
    fresh session (a young process pays one-off costs), then a fresh session's first prompt, and
    the old session's first (its conversation rebuilt) and second prompts."""
    times = await warm_up(bench)
    samples.add("young first", times[0])
    samples.add("young slowest", max(times[1:]))
    samples.add("young median", statistics.median(times[1:]))
    samples.add("fresh first prompt", (await bench.prompt(await bench.session(), TEXT_PROMPT))[0])
    samples.add("rebuilt first prompt", (await bench.prompt(old_session, TEXT_PROMPT))[0])
    samples.add("rebuilt second prompt", (await bench.prompt(old_session, TEXT_PROMPT))[0])


async def idle_sessions(bench: Bench, daemon: Daemon, samples: Samples, count: int) -> None:
    before = rss_kib(daemon.process.pid)
    for _ in range(count):
        await bench.create()
    samples.add("rss per idle session", (rss_kib(daemon.process.pid) - before) / count)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rate(count: float, seconds: float, unit: str) -> str:
    return f"{count / seconds:,.0f} {unit}/s"


def report(samples: Samples, args: argparse.Namespace) -> None:
    m = samples.median
    calls = args.steps + 1  # one model call per tool step, and the reply
    rows = [
        ("session create", ms(m("create")), "", ""),
        ("text prompt round trip", ms(m("text")), ms(m("text direct")), ms(m("text") - m("text direct"))),
        ("tool prompt (Write, then text)", ms(m("tool")), ms(m("tool direct")), ms(m("tool") - m("tool direct"))),
        (
            "  one tool step (tool prompt - text prompt)",
            ms(m("tool") - m("text")),
            ms(m("tool direct") - m("text direct")),
            ms(m("tool") - m("text") - m("tool direct") + m("text direct")),
        ),
        (
            f"{args.steps}-step turn (Read/Glob), per model call",
            ms(m("steps") / calls),
            ms(m("steps direct") / calls),
            ms((m("steps") - m("steps direct")) / calls),
        ),
        (
            f"  the same, the last turn of a {args.history}-step conversation (once)",
            ms(m("deep steps")),
            ms(m("deep steps direct")),
            ms(m("deep steps") - m("deep steps direct")),
        ),
        (
            f"streaming, {args.deltas:,} deltas in one reply",
            rate(m("stream chunks"), m("stream"), "chunks"),
            rate(m("stream direct deltas"), m("stream direct"), "deltas"),
            "",
        ),
        (
            "  the mock model server alone (raw SSE, no SDK)",
            "",
            rate(m("stream raw deltas"), m("stream raw"), "deltas"),
            "",
        ),
        ("after a restart: the daemon's first prompt (a fresh session)", ms(m("young first")), "", ""),
        (
            f"  its next {WARM_PROMPTS - 1}: the slowest · the median",
            f"{ms(m('young slowest'))} · {ms(m('young median'))}",
            "",
            "",
        ),
        (f"  then the {args.history}-step session's first prompt (rebuilt)", ms(m("rebuilt first prompt")), "", ""),
        ("  and its second prompt", ms(m("rebuilt second prompt")), "", ""),
        ("  a fresh session's first prompt", ms(m("fresh first prompt")), "", ""),
        ("daemon RSS after the workload", f"{m('rss workload') / 1024:.1f} MiB", "", ""),
        (f"  per idle session ({args.idle} more)", f"{m('rss per idle session'):,.0f} KiB", "", ""),
        ("daemon RSS after a restart and the rebuild", f"{m('rss rebuilt') / 1024:.1f} MiB", "", ""),
    ]
    print(f"claude-native through acpd, median of {args.runs} (SQLite, permissions=allow, mock model in this process)")
    header = ("", "acpd", "SDK direct", "acpd's share")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        print("  ".join(cells).rstrip())
    print(f"(the longest request body of that conversation: {m('deep body bytes') / 1024:.0f} KiB of JSON)")
    counted = {name: samples.values[name] for name in ("stream chunks", "stream direct deltas", "stream raw deltas")}
    if any(count != args.deltas for counts in counted.values() for count in counts):
        print(f"note: {args.deltas} deltas expected; counted {counted}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as scratch:
        home = Path(scratch)
        (home / "work").mkdir()
        (home / "work" / "a.txt").write_text("a small file\n" * 20)
        samples = Samples()
        async with (
            serve_mock_model() as model,
            AsyncAnthropic(base_url=model.url, api_key=PLACEHOLDER_KEY, max_retries=0) as sdk,
        ):
            # A full collection of this process (~160k objects after imports) takes ~0.1 s here;
            # frozen, they are never scanned, and its pauses stay off the figures.
            gc.collect()
            gc.freeze()
            async with bench_on(home, model, sdk) as (bench, daemon):
                await warm_up(bench)  # the figures below are a settled daemon's
                for run in range(args.runs):
                    await one_run(bench, samples, args, run)
                old_session = await long_session(bench, samples, args)
                samples.add("rss workload", rss_kib(daemon.process.pid))
                await idle_sessions(bench, daemon, samples, args.idle)
            for _ in range(args.runs):
                async with bench_on(home, model, sdk) as (bench, daemon):
                    await after_restart(bench, samples, old_session)
                    samples.add("rss rebuilt", rss_kib(daemon.process.pid))
        report(samples, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="tool steps in a many-step turn (default 20)")
    parser.add_argument("--deltas", type=int, default=5000, help="text deltas in the streamed reply (default 5000)")
    parser.add_argument("--history", type=int, default=200, help="tool steps in the restarted session (default 200)")
    parser.add_argument("--idle", type=int, default=50, help="idle sessions created to weigh one (default 50)")
    anyio.run(main, parser.parse_args(), backend_options={"use_uvloop": True})
