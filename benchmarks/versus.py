"""acpd side by side with rivet-dev/sandbox-agent 0.4.2, the same Python ACP agent behind both.

Both daemons run acpd's mock agent (``python -m acpd.testing.mock_agent``): acpd as a custom agent
of its config file (``[agents.pymock]``, so not the built-in ``mock`` with its state directory),
sandbox-agent as the launcher of its ``mock`` agent (``<XDG_DATA_HOME>/sandbox-agent/bin/
agent_processes/mock-acp``, a two-line ``exec`` script: 0.4.2 has no other way to name a custom
agent command). Both get a bearer token (acpd in ``ACPD_TOKEN``, sandbox-agent in ``--token``).
sandbox-agent's binary comes from npm (``@sandbox-agent/cli-linux-<arch>@0.4.2``) into
``.cache/sandbox-agent-0.4.2`` once; without npm only acpd's side runs, and the report says so.

Each round runs every metric on both daemons, one after the other (the order alternates between
rounds), each on a fresh daemon with a fresh home, so that the machine's load hits both alike.
Requests go through a bare keep-alive HTTP/1.1 client over anyio sockets (httpx costs about 0.4 ms
a request here, more than sandbox-agent's whole round trip); SSE streams are read with httpx
(its cost is per read, not per event).

The metrics (``--only``):

- ``start``: spawn → first 200 on ``/v1/health``; RSS one second later, the daemon alone and with its children.
- ``prompt``: round trip of a one-chunk prompt, 500 after 20 warm-ups: acpd's REST blocking POST, and
  ACP-over-HTTP ``session/prompt`` POSTs on both (an SSE reader open, as an SDK has); the daemon's
  CPU per prompt (utime + stime of ``/proc/<pid>/stat``, 10 ms ticks over the 500).
- ``session``: ``session/new`` on an initialized connection; a new connection's ``initialize`` +
  ``session/new``; acpd's REST ``POST /v1/sessions``.
- ``stream``: one turn of ``chunks 100000``: events/s from the prompt to its answer on the stream,
  chunks lost (their texts ``c0``… ``c99999`` are counted and checked for order), whether the answer
  itself reached the stream, and the first chunk's delay after the prompt. acpd: REST SSE,
  ACP-over-HTTP SSE, WebSocket ``/v1/rpc``; sandbox-agent: its SSE.
- ``memory``: RSS growth over 100 live sessions, per session, the daemon alone and with its children.
- ``load``: 50 sessions, each its own connection sending 100 prompts one after the other, all 50 at
  once (5,000 prompts, 50 in flight): prompts/s, round trips, daemon CPU per prompt.
- ``creates``: 200 session creates at once, each on its own connection.

Topology: acpd shares one agent process among the sessions of an agent with the same settings (a
warm spare started ahead of demand; ``processPerSession`` agents excepted); sandbox-agent runs one
agent process per ACP server id, which may host many sessions. "one server" rows put every session
on one agent process (what sandbox-agent's SDK does), which is what acpd's rows are compared with;
"a server per session" rows give sandbox-agent an agent process per session.

``--floor`` adds a third side to ``prompt`` and ``load``, in the same rounds: ``_prompt_floor.py``,
acpd's HTTP stack (uvloop, uvicorn and its httptools protocol as acpd configures them, Starlette,
orjson, the middleware acpd runs before every request) relaying each prompt to one mock agent over
its pipes and answering its result, with nothing else: no store, no event log, no normalization, no
stream (its ACP-over-HTTP rows have no SSE reader: it has no stream to read). Its CPU is the floor
server's own, not the agent's. The table then shows the floor and acpd ÷ floor.

    .venv/bin/python benchmarks/versus.py --runs 3 --json versus.json
    .venv/bin/python benchmarks/versus.py --quick --only prompt,stream
    .venv/bin/python benchmarks/versus.py --runs 3 --only prompt --floor
    .venv/bin/python benchmarks/versus.py --table versus.json     # the table again, from a saved run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx
import orjson
from _proc import cpu_seconds, descendants, rss_kib
from anyio.abc import Process, SocketStream
from websockets.asyncio.client import connect

from acpd.testing.daemon import daemon_env

ROOT: Final = Path(__file__).resolve().parent.parent
SA_VERSION: Final = "0.4.2"
SA_PACKAGES: Final = {"x86_64": "@sandbox-agent/cli-linux-x64", "aarch64": "@sandbox-agent/cli-linux-arm64"}
SA_DIR: Final = ROOT / ".cache" / f"sandbox-agent-{SA_VERSION}"
ACPD: Final = "acpd"
SA: Final = "sandbox-agent"
FLOOR: Final = "floor"
FLOOR_SCRIPT: Final = Path(__file__).with_name("_prompt_floor.py")
FLOOR_METRICS: Final = ("prompt", "load")
"""The metrics ``--floor`` runs on the floor server (it serves only prompts and session creates)."""
METRICS: Final = ("start", "prompt", "session", "stream", "memory", "load", "creates")
CHUNK_TEXT: Final = re.compile(rb'"text": ?"c(\d+) ')
END_MARK: Final = b'"stopReason"'
WARM_UPS: Final = 20
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 15.0
TURN_TIMEOUT: Final = 300.0
LOST_RESPONSE_IDLE: Final = 3.0
"""After the prompt's POST returned, how long a stream may stay silent before its answer counts as lost."""

Json = dict[str, Any]


@dataclass
class Sizes:
    launches: int = 5
    prompts: int = 500
    news: int = 50
    fresh: int = 20
    chunks: int = 100_000
    live: int = 100
    load_sessions: int = 50
    load_prompts: int = 100
    creates: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        return cls(launches=2, prompts=100, news=10, fresh=5, chunks=20_000, live=20, load_sessions=10,
                   load_prompts=20, creates=40)  # fmt: skip


# --- processes --------------------------------------------------------------------------------


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(the process's RSS, its RSS plus every descendant's), in KiB."""
    own = rss_kib(pid)
    return own, own + sum(rss_kib(child) for child in descendants(pid))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- a bare HTTP/1.1 client -------------------------------------------------------------------


class Bare:
    """A keep-alive HTTP/1.1 client over one socket: Content-Length or chunked bodies, nothing else."""

    def __init__(self, stream: SocketStream, host: str, token: str) -> None:
        self._stream = stream
        self._host = host
        self._fixed = f"Host: {host}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n"
        self._buffer = b""

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, token: str) -> AsyncIterator[Bare]:
        parts = urlsplit(url)
        async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
            yield cls(stream, parts.netloc, token)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = head.encode() + b"\r\n" + (body or b"")
        try:
            await self._stream.send(request)
            head_bytes = await self._until(b"\r\n\r\n")
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            # the server closed the idle keep-alive connection (uvicorn does after 5 s): reconnect
            # once and send again, as any HTTP client does; nothing of the answer was read yet
            if self._buffer:
                raise
            await self._reconnect()
            await self._stream.send(request)
            head_bytes = await self._until(b"\r\n\r\n")
        status_line, *fields = head_bytes.split(b"\r\n")
        headers = {}
        for line in fields:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = await self._chunked()
        else:
            data = await self._exactly(int(headers.get(b"content-length", b"0")))
        return int(status_line.split()[1]), data

    async def _reconnect(self) -> None:
        await self._stream.aclose()
        hostname, _, port = self._host.rpartition(":")
        self._stream = await anyio.connect_tcp(hostname, int(port))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def post(self, path: str, message: object) -> tuple[int, bytes]:
        return await self.request("POST", path, orjson.dumps(message))

    async def _until(self, mark: bytes) -> bytes:
        while mark not in self._buffer:
            self._buffer += await self._stream.receive()
        found, _, self._buffer = self._buffer.partition(mark)
        return found

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += await self._stream.receive()
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found

    async def _chunked(self) -> bytes:
        parts = []
        while size := int((await self._until(b"\r\n")).split(b";")[0], 16):
            parts.append(await self._exactly(size))
            await self._until(b"\r\n")
        await self._until(b"\r\n")
        return b"".join(parts)


def rpc(request_id: int, method: str, params: Json) -> Json:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def prompt_params(session_id: str, text: str) -> Json:
    return {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}


def ok_json(status: int, data: bytes, *, expect: int = 200) -> Json:
    if status != expect:
        raise RuntimeError(f"HTTP {status} (expected {expect}): {data[:300]!r}")
    message: Json = orjson.loads(data)
    if "error" in message and "jsonrpc" in message:
        raise RuntimeError(f"JSON-RPC error: {data[:300]!r}")
    return message


# --- the two daemons --------------------------------------------------------------------------


@dataclass
class Daemon:
    side: str
    process: Process
    url: str
    token: str
    home: Path
    agent: str
    """The agent to name in ``?agent=`` (ACP over HTTP) or in a REST session create."""
    started_in: float = 0.0
    _ids: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def acp_path(self, server: str) -> str:
        return f"/v1/acp/{server}?agent={self.agent}"


def sandbox_agent_binary() -> Path | None:
    """The pinned binary, installed from npm into .cache once; None without npm or a package for this arch."""
    package = SA_PACKAGES.get(platform.machine())
    if package is None:
        return None
    binary = SA_DIR / "node_modules" / package / "bin" / "sandbox-agent"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            return None
        print(f"installing {package}@{SA_VERSION} into {SA_DIR.relative_to(ROOT)} …", file=sys.stderr)
        SA_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(SA_DIR), "--no-audit", "--no-fund", "--ignore-scripts",
             f"{package}@{SA_VERSION}"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    binary.chmod(0o755)  # --ignore-scripts skipped the package's own chmod
    return binary


def mock_command() -> list[str]:
    return [sys.executable, "-m", "acpd.testing.mock_agent"]


def acpd_argv(home: Path, port: int, launcher: Path | None = None) -> list[str]:
    """acpd takes its token from ``ACPD_TOKEN`` (never a flag). ``launcher``: a script that runs
    acpd with its arguments, in place of ``-m acpd``."""
    python, *args = mock_command()
    config = home / "versus.toml"
    config.write_text(f"[agents.pymock]\ncommand = {json.dumps(python)}\nargs = {json.dumps(args)}\n")
    acpd = ["-m", "acpd"] if launcher is None else [str(launcher)]
    return [sys.executable, *acpd, "serve", "--port", str(port), "--config", str(config)]


def sandbox_agent_argv(binary: Path, home: Path, port: int, token: str) -> list[str]:
    launchers = home / "data" / "sandbox-agent" / "bin" / "agent_processes"
    launchers.mkdir(parents=True)
    launcher = launchers / "mock-acp"
    launcher.write_text("#!/bin/sh\nexec " + " ".join(mock_command()) + ' "$@"\n')
    launcher.chmod(0o755)
    return [str(binary), "server", "--token", token, "--no-telemetry", "-H", "127.0.0.1", "-p", str(port)]


async def healthy(url: str, token: str) -> bool:
    try:
        async with Bare.open(url, token) as http:
            status, _ = await http.request("GET", "/v1/health")
            return status == 200
    except OSError:
        return False


@asynccontextmanager
async def daemon(
    side: str,
    sa_binary: Path | None,
    *,
    src: str | None = None,
    launcher: Path | None = None,
    env_extra: Mapping[str, str] | None = None,
) -> AsyncIterator[Daemon]:
    """A fresh daemon in a fresh home; ``started_in`` is spawn → first 200 on /v1/health (polled every ms).
    ``src``: acpd (and its mock agent) from another checkout's ``src`` (an absolute path), through PYTHONPATH.
    ``launcher``: a script that runs acpd with its arguments (``python launcher serve …``, not
    ``python -m acpd serve …``); ``env_extra``: more of the daemon's environment."""
    with tempfile.TemporaryDirectory(prefix=f"versus-{side}-") as tmp:
        home = Path(tmp)
        port, token = free_port(), secrets.token_hex(24)
        env = daemon_env(home)
        if src is not None:
            env["PYTHONPATH"] = src
        # acpd, the floor and the agent start from bytecode, as installed ones do, not compiling their
        # sources at every start (and a source edited since its bytecode was written at every run)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(env_extra or {})
        if side == ACPD:
            argv, agent = acpd_argv(home, port, launcher), "pymock"
            env["ACPD_TOKEN"] = token
        elif side == FLOOR:
            argv, agent = [sys.executable, str(FLOOR_SCRIPT), "--port", str(port)], "pymock"  # any name: one agent
            env["ACPD_TOKEN"] = token
        else:
            assert sa_binary is not None
            argv, agent = sandbox_agent_argv(sa_binary, home, port, token), "mock"
            env["SANDBOX_AGENT_REQUIRE_PREINSTALL"] = "1"  # never reach a registry
        url = f"http://127.0.0.1:{port}"
        with (home / "daemon.log").open("wb") as log:
            t0 = time.perf_counter()
            process = await anyio.open_process(argv, env=env, stdout=log, stderr=log, cwd=home)
        running = Daemon(side, process, url, token, home, agent)
        try:
            with anyio.fail_after(START_TIMEOUT):
                while not await healthy(url, token):
                    if process.returncode is not None:
                        raise RuntimeError(f"{side} exited: {(home / 'daemon.log').read_text()[-2000:]}")
                    await anyio.sleep(0.001)
            running.started_in = time.perf_counter() - t0
            yield running
        finally:
            await stop(process)


async def stop(process: Process) -> None:
    """SIGTERM (sandbox-agent hangs on SIGINT with a live agent), then SIGKILL; then wait for its agents."""
    left = descendants(process.pid)
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(STOP_TIMEOUT) as scope:
            await process.wait()
        if scope.cancelled_caught:
            process.kill()
            await process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    while left := [pid for pid in left if not gone(pid)]:
        if time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        await anyio.sleep(0.05)


def gone(pid: int) -> bool:
    """True once the process has exited (a zombie counts: it is its parent's to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


# --- sessions ---------------------------------------------------------------------------------


async def acp_open(http: Bare, d: Daemon, server: str, cwd: str) -> str:
    """initialize (creating the server/connection) and session/new; the session id."""
    ok_json(*await http.post(d.acp_path(server), rpc(d.next_id(), "initialize", {"protocolVersion": 1})))
    return await acp_new(http, d, server, cwd)


async def acp_new(http: Bare, d: Daemon, server: str, cwd: str) -> str:
    created = ok_json(
        *await http.post(d.acp_path(server), rpc(d.next_id(), "session/new", {"cwd": cwd, "mcpServers": []}))
    )
    session_id: str = created["result"]["sessionId"]
    return session_id


async def rest_create(http: Bare, d: Daemon, cwd: str) -> str:
    created = ok_json(*await http.post("/v1/sessions", {"agent": d.agent, "cwd": cwd}), expect=201)
    session_id: str = created["id"]
    return session_id


def server_id() -> str:
    return f"versus-{uuid.uuid4().hex[:12]}"


class Prompter:
    """One way to send a one-chunk prompt and wait for its answer."""

    def __init__(self, d: Daemon, http: Bare, session_id: str, server: str | None) -> None:
        self.d, self.http, self.session_id, self.server = d, http, session_id, server
        self.rest_body = orjson.dumps({"prompt": "text hi"})

    async def __call__(self) -> None:
        if self.server is None:
            status, data = await self.http.request("POST", f"/v1/sessions/{self.session_id}/prompt", self.rest_body)
            answer = ok_json(status, data)
        else:
            message = rpc(self.d.next_id(), "session/prompt", prompt_params(self.session_id, "text hi"))
            answer = ok_json(*await self.http.post(self.d.acp_path(self.server), message))["result"]
        if answer.get("stopReason") != "end_turn":
            raise RuntimeError(f"unexpected answer {answer}")


@asynccontextmanager
async def sse_drain(d: Daemon, path: str, on_event: Callable[[bytes], None] | None = None) -> AsyncIterator[None]:
    """Keep an SSE stream open (as an SDK does) and read it, handing each event's data to ``on_event``."""
    headers = {"Authorization": f"Bearer {d.token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=d.url, timeout=None, headers=headers) as client,
        anyio.create_task_group() as tg,
    ):
        started = anyio.Event()

        async def read() -> None:
            async with client.stream("GET", path) as response:
                response.raise_for_status()
                started.set()
                tail = b""
                async for raw in response.aiter_raw():
                    blocks = (tail + raw).split(b"\n\n")
                    tail = blocks.pop()
                    if on_event is None:
                        continue
                    for block in blocks:
                        for line in block.split(b"\n"):
                            if line.startswith(b"data:"):
                                on_event(line[5:])

        tg.start_soon(read)
        await started.wait()
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


# --- results ----------------------------------------------------------------------------------


@dataclass
class Results:
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """row key → side → one value per run."""

    def add(self, key: str, side: str, value: float) -> None:
        self.values.setdefault(key, {}).setdefault(side, []).append(value)


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def add_latencies(results: Results, key: str, side: str, samples: list[float]) -> None:
    results.add(f"{key} p50", side, statistics.median(samples) * 1000)
    results.add(f"{key} p90", side, quantile(samples, 0.9) * 1000)
    results.add(f"{key} p99", side, quantile(samples, 0.99) * 1000)


# --- 1. cold start and idle memory ------------------------------------------------------------


async def m_start(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    for _ in range(sizes.launches):
        async with daemon(side, sa) as d:
            results.add("start: spawn → first 200 /v1/health (ms)", side, d.started_in * 1000)
            await anyio.sleep(1.0)
            own, tree = tree_rss_kib(d.pid)
            results.add("start: idle RSS, daemon (MiB)", side, own / 1024)
            results.add("start: idle RSS, daemon + children (MiB)", side, tree / 1024)


# --- 2. prompt round trip ---------------------------------------------------------------------


async def timed(prompt: Callable[[], Awaitable[None]], count: int) -> list[float]:
    """The round trips of ``count`` prompts one after the other, in s."""
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        await prompt()
        samples.append(time.perf_counter() - t0)
    return samples


async def timed_prompts(d: Daemon, prompt: Prompter, count: int) -> tuple[list[float], float]:
    """(round trips in s, daemon CPU seconds per prompt), after the warm-ups."""
    await timed(prompt, WARM_UPS)
    cpu0 = cpu_seconds(d.pid)
    samples = await timed(prompt, count)
    return samples, (cpu_seconds(d.pid) - cpu0) / count


async def m_prompt(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    faces = ["acp"] if side == SA else ["rest", "acp"]
    for face in faces:
        async with daemon(side, sa) as d, Bare.open(d.url, d.token) as http:
            cwd = str(d.home)
            if face == "rest":
                session_id = await rest_create(http, d, cwd)
                samples, cpu = await timed_prompts(d, Prompter(d, http, session_id, None), sizes.prompts)
                label = "REST blocking POST"
            else:
                server = server_id()
                session_id = await acp_open(http, d, server, cwd)
                reader = sse_drain(d, f"/v1/acp/{server}") if side != FLOOR else contextlib.nullcontext()
                async with reader:  # the floor has no stream
                    samples, cpu = await timed_prompts(d, Prompter(d, http, session_id, server), sizes.prompts)
                label = "ACP-over-HTTP POST, SSE open"
            add_latencies(results, f"prompt: round trip, {label} (ms)", side, samples)
            results.add(f"prompt: daemon CPU per prompt, {label} (ms)", side, cpu * 1000)


# --- 3. session/new ---------------------------------------------------------------------------


async def m_session(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    async with daemon(side, sa) as d, Bare.open(d.url, d.token) as http:
        cwd = str(d.home)
        server = server_id()
        await acp_open(http, d, server, cwd)
        samples = []
        for _ in range(sizes.news):
            t0 = time.perf_counter()
            await acp_new(http, d, server, cwd)
            samples.append(time.perf_counter() - t0)
        add_latencies(results, "session: session/new on an initialized connection (ms)", side, samples)
        fresh = []
        for _ in range(sizes.fresh):
            t0 = time.perf_counter()
            await acp_open(http, d, server_id(), cwd)
            fresh.append(time.perf_counter() - t0)
        add_latencies(results, "session: new connection, initialize + session/new (ms)", side, fresh)
        if side == ACPD:
            rest = []
            for _ in range(sizes.news):
                t0 = time.perf_counter()
                await rest_create(http, d, cwd)
                rest.append(time.perf_counter() - t0)
            add_latencies(results, "session: REST POST /v1/sessions (ms)", side, rest)


# --- 4. one long streamed turn ----------------------------------------------------------------


class Tally:
    """The chunk updates of one turn: how many, whether ``c<i>`` came in order, and when."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.count = 0
        self.next_index = 0
        self.disorder = 0
        self.first = 0.0
        self.last = 0.0
        self.ended = anyio.Event()

    def see(self, data: bytes) -> None:
        now = time.perf_counter()
        match = CHUNK_TEXT.search(data)
        if match is not None:
            if not self.count:
                self.first = now
            self.count += 1
            index = int(match.group(1))
            self.disorder += index != self.next_index
            self.next_index = index + 1
            self.last = now
        elif END_MARK in data:
            self.last = now
            self.ended.set()

    async def settle(self) -> bool:
        """Wait for the turn's answer on the stream; False if it never came (the stream went silent)."""
        while True:
            seen = self.count
            with anyio.move_on_after(LOST_RESPONSE_IDLE):
                await self.ended.wait()
                return True
            if self.count == seen:
                return False


def report_stream(results: Results, label: str, side: str, tally: Tally, chunks: int, answered: bool) -> None:
    results.add(f"stream: {label}, events/s", side, tally.count / (tally.last - tally.t0))
    results.add(f"stream: {label}, lost events", side, chunks - tally.count)
    results.add(f"stream: {label}, breaks in the c<i> sequence (a gap or a reorder)", side, tally.disorder)
    results.add(f"stream: {label}, answer missing from the stream", side, 0 if answered else 1)
    results.add(f"stream: {label}, first event after the prompt (ms)", side, (tally.first - tally.t0) * 1000)


async def m_stream(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    faces = ["rest", "acp", "ws"] if side == ACPD else ["acp"]
    text = f"chunks {sizes.chunks}"
    for face in faces:
        async with daemon(side, sa) as d, Bare.open(d.url, d.token) as http:
            cwd = str(d.home)
            with anyio.fail_after(TURN_TIMEOUT):
                if face == "ws":
                    tally = await ws_turn(d, cwd, text)
                    answered = True
                    label = "WebSocket /v1/rpc"
                elif face == "rest":
                    session_id = await rest_create(http, d, cwd)
                    tally = Tally(0.0)
                    async with sse_drain(d, f"/v1/sessions/{session_id}/events/stream", tally.see):
                        body = orjson.dumps({"prompt": text})
                        tally.t0 = time.perf_counter()
                        ok_json(*await http.request("POST", f"/v1/sessions/{session_id}/prompt", body))
                        answered = await tally.settle()
                    label = "REST SSE"
                else:
                    server = server_id()
                    session_id = await acp_open(http, d, server, cwd)
                    tally = Tally(0.0)
                    async with sse_drain(d, f"/v1/acp/{server}", tally.see):
                        message = rpc(d.next_id(), "session/prompt", prompt_params(session_id, text))
                        tally.t0 = time.perf_counter()
                        ok_json(*await http.post(d.acp_path(server), message))
                        answered = await tally.settle()
                    label = "ACP-over-HTTP SSE"
            report_stream(results, label, side, tally, sizes.chunks, answered)


async def ws_turn(d: Daemon, cwd: str, text: str) -> Tally:
    url = d.url.replace("http://", "ws://") + f"/v1/rpc?agent={d.agent}"
    headers = {"Authorization": f"Bearer {d.token}"}
    async with connect(url, max_size=None, compression=None, additional_headers=headers) as ws:

        async def call(method: str, params: Json, tally: Tally | None = None) -> Json:
            request_id = d.next_id()
            await ws.send(orjson.dumps(rpc(request_id, method, params)).decode())
            while True:
                frame = await ws.recv(decode=False)
                if tally is not None:
                    tally.see(frame)
                if b'"method"' not in frame and orjson.loads(frame).get("id") == request_id:
                    return ok_json(200, frame)

        await call("initialize", {"protocolVersion": 1})
        session_id = (await call("session/new", {"cwd": cwd, "mcpServers": []}))["result"]["sessionId"]
        tally = Tally(time.perf_counter())
        await call("session/prompt", prompt_params(session_id, text), tally)
        return tally


# --- 5. memory per live session ---------------------------------------------------------------


async def m_memory(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    layouts = ["REST sessions"] if side == ACPD else ["one server", "a server per session"]
    for layout in layouts:
        async with daemon(side, sa) as d, Bare.open(d.url, d.token) as http:
            create = await session_maker(layout, d, http)
            await anyio.sleep(0.5)
            own0, tree0 = tree_rss_kib(d.pid)
            for _ in range(sizes.live):
                await create()
            await anyio.sleep(1.0)
            own1, tree1 = tree_rss_kib(d.pid)
            results.add(f"memory: per live session, daemon, {layout} (KiB)", side, (own1 - own0) / sizes.live)
            results.add(
                f"memory: per live session, daemon + children, {layout} (KiB)", side, (tree1 - tree0) / sizes.live
            )
            results.add(f"memory: daemon after {sizes.live} sessions, {layout} (MiB)", side, own1 / 1024)


async def session_maker(layout: str, d: Daemon, http: Bare) -> Callable[[], Awaitable[str]]:
    """A function that opens one more session in ``layout``. "one server" and acpd's REST sessions
    open a first session before (its agent process starts, and acpd loads the agents' models), so
    that what is counted per session is the session's own."""
    cwd = str(d.home)
    if layout == "REST sessions":
        await rest_create(http, d, cwd)
        return lambda: rest_create(http, d, cwd)
    if layout == "a server per session":
        return lambda: acp_open(http, d, server_id(), cwd)
    server = server_id()
    await acp_open(http, d, server, cwd)
    return lambda: acp_new(http, d, server, cwd)


# --- 6. many sessions prompting at once -------------------------------------------------------


async def m_load(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    faces = ["acp"] if side == SA else ["rest", "acp"]
    for face in faces:
        async with daemon(side, sa) as d:
            prompters: list[Prompter] = []
            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(sizes.load_sessions):
                        tg.start_soon(open_prompter, d, face, str(d.home), prompters)
                samples, wall, cpu = await prompt_together(d, prompters, sizes.load_prompts)
            finally:
                for prompter in prompters:
                    await prompter.http.aclose()
        label = "REST" if face == "rest" else "ACP-over-HTTP" + (", a server per session" if side == SA else "")
        results.add(f"load: prompts/s, {label}", side, len(samples) / wall)
        add_latencies(results, f"load: round trip, {label} (ms)", side, samples)
        results.add(f"load: daemon CPU per prompt, {label} (ms)", side, cpu / len(samples) * 1000)


async def prompt_together(d: Daemon, prompters: list[Prompter], count: int) -> tuple[list[float], float, float]:
    """Every prompter sends ``count`` prompts, one after the other, all at once: (round trips, wall s, daemon CPU s)."""
    samples: list[float] = []
    go = anyio.Event()

    async def drive(prompt: Prompter) -> None:
        for _ in range(2):
            await prompt()
        await go.wait()
        for _ in range(count):
            t0 = time.perf_counter()
            await prompt()
            samples.append(time.perf_counter() - t0)

    async with anyio.create_task_group() as tg:
        for prompter in prompters:
            tg.start_soon(drive, prompter)
        await anyio.sleep(1.0)  # the warm-ups
        cpu0 = cpu_seconds(d.pid)
        t0 = time.perf_counter()
        go.set()
    return samples, time.perf_counter() - t0, cpu_seconds(d.pid) - cpu0


async def open_prompter(d: Daemon, face: str, cwd: str, into: list[Prompter]) -> None:
    parts = urlsplit(d.url)
    stream = await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80)
    http = Bare(stream, parts.netloc, d.token)
    if face == "rest":
        into.append(Prompter(d, http, await rest_create(http, d, cwd), None))
    else:
        server = server_id()
        into.append(Prompter(d, http, await acp_open(http, d, server, cwd), server))


# --- 7. concurrent session creates ------------------------------------------------------------


CREATE_LABELS: Final = {
    "rest": "REST POST /v1/sessions",
    "acp one connection": "ACP session/new, one connection",
    "one server": "ACP session/new, one server",
    "a server per session": "ACP initialize + session/new, a server per session",
}


async def m_creates(side: str, sa: Path | None, sizes: Sizes, results: Results) -> None:
    layouts = ["rest", "acp one connection"] if side == ACPD else ["one server", "a server per session"]
    for layout in layouts:
        async with daemon(side, sa) as d:
            samples, failures, wall = await create_together(d, layout, sizes.creates)
        label = CREATE_LABELS[layout]
        results.add(f"creates: {sizes.creates} at once, all done (s), {label}", side, wall)
        results.add(f"creates: failed, {label}", side, failures)
        if samples:
            add_latencies(results, f"creates: each, {label} (ms)", side, samples)


async def create_together(d: Daemon, layout: str, count: int) -> tuple[list[float], int, float]:
    """``count`` session creates at once, each on its own HTTP connection: (each one's s, failures, wall s)."""
    cwd = str(d.home)
    server = server_id()
    if layout in ("one server", "acp one connection"):
        async with Bare.open(d.url, d.token) as http:
            ok_json(*await http.post(d.acp_path(server), rpc(d.next_id(), "initialize", {"protocolVersion": 1})))
    samples: list[float] = []
    failures: list[str] = []

    async def one() -> None:
        try:
            async with Bare.open(d.url, d.token) as http:
                t0 = time.perf_counter()
                if layout == "rest":
                    await rest_create(http, d, cwd)
                elif layout == "a server per session":
                    await acp_open(http, d, server_id(), cwd)
                else:
                    await acp_new(http, d, server, cwd)
                samples.append(time.perf_counter() - t0)
        except (OSError, RuntimeError) as error:
            failures.append(str(error))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    wall = time.perf_counter() - t0
    if failures:
        print(f"  {len(failures)} creates failed on {d.side}, the first: {failures[0][:300]}")
    return samples, len(failures), wall


# --- driving and reporting --------------------------------------------------------------------

RUNNERS: Final[dict[str, Callable[[str, Path | None, Sizes, Results], Awaitable[None]]]] = {
    "start": m_start,
    "prompt": m_prompt,
    "session": m_session,
    "stream": m_stream,
    "memory": m_memory,
    "load": m_load,
    "creates": m_creates,
}

REPLACEMENTS: Final = (
    # (in an acpd row's key, in the sandbox-agent row it is divided by): the same operation, or the same
    # topology (sessions sharing an agent process) where the operation differs
    ("REST blocking POST", "ACP-over-HTTP POST, SSE open"),
    ("session: REST POST /v1/sessions", "session: session/new on an initialized connection"),
    ("REST SSE", "ACP-over-HTTP SSE"),
    ("WebSocket /v1/rpc", "ACP-over-HTTP SSE"),
    ("REST sessions", "one server"),
    ("REST", "ACP-over-HTTP, a server per session"),
    ("ACP-over-HTTP", "ACP-over-HTTP, a server per session"),
    ("REST POST /v1/sessions", "ACP session/new, one server"),
    ("ACP session/new, one connection", "ACP session/new, one server"),
)


def counterpart(key: str, values: dict[str, dict[str, list[float]]]) -> str | None:
    """The sandbox-agent row an acpd row is compared with, if any."""
    if SA in values.get(key, {}):
        return key
    for mine, theirs in REPLACEMENTS:
        candidate = key.replace(mine, theirs)
        if candidate != key and SA in values.get(candidate, {}):
            return candidate
    return None


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(values: list[float] | None) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}–{fmt(max(values))}]"  # noqa: RUF001


def ratio(mine: list[float] | None, theirs: list[float] | None) -> str:
    if mine and theirs and statistics.median(theirs):
        return f"{statistics.median(mine) / statistics.median(theirs):.2f}"
    return "—"


def table(results: Results) -> list[str]:
    values = results.values
    floor = any(FLOOR in sides for sides in values.values())
    lines = [
        "| metric | acpd | sandbox-agent 0.4.2 | acpd ÷ sandbox-agent |" + (" floor | acpd ÷ floor |" if floor else ""),
        "|---|---|---|---|" + ("---|---|" if floor else ""),
    ]
    paired = {counterpart(key, values) for key, sides in values.items() if ACPD in sides}
    for key, sides in values.items():
        mine = sides.get(ACPD)
        if mine is None and key in paired:
            continue  # shown next to its acpd row
        theirs_key = counterpart(key, values) if mine else key
        theirs = values.get(theirs_key, {}).get(SA) if theirs_key else None
        label = key if theirs_key in (None, key) else f"{key} ⟷ {theirs_key.split(': ', 1)[1]}"
        line = f"| {label} | {cell(mine)} | {cell(theirs)} | {ratio(mine, theirs)} |"
        if floor:
            least = sides.get(FLOOR)
            line += f" {cell(least)} | {ratio(mine, least)} |"
        lines.append(line)
    return lines


def machine() -> Json:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def load_now() -> Json:
    one, five, fifteen = os.getloadavg()
    return {"at": time.strftime("%H:%M:%S", time.gmtime()), "load1": one, "load5": five, "load15": fifteen}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="rounds; each runs every metric on both daemons")
    parser.add_argument("--only", default=",".join(METRICS), help=f"comma-separated, from {','.join(METRICS)}")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--json", type=Path, help="write every per-run value and the machine's load here")
    parser.add_argument("--acpd-only", action="store_true", help="skip sandbox-agent even when npm is there")
    parser.add_argument(
        "--floor", action="store_true", help="also run the floor server (_prompt_floor.py) in prompt and load"
    )
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the table of a --json file and exit")
    args = parser.parse_args()
    if args.table:
        saved = json.loads(args.table.read_text())
        print(f"machine: {saved['machine']}; load {saved['load_start']} → {saved.get('load_end')}")
        print("\n".join(table(Results(saved["values"]))))
        return
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(only) - set(METRICS):
        raise SystemExit(f"unknown metrics {sorted(unknown)}; pick from {','.join(METRICS)}")
    sizes = Sizes.quick() if args.quick else Sizes()
    sa = None if args.acpd_only else sandbox_agent_binary()
    sides = [ACPD] if sa is None else [ACPD, SA]
    if args.floor:
        sides.append(FLOOR)
    info = {"machine": machine(), "load_start": load_now(), "sizes": sizes.__dict__, "runs": args.runs}
    print(f"machine: {info['machine']}")
    print(f"load at start: {info['load_start']}")
    if sa is None:
        print("sandbox-agent: not run (no npm, no package for this arch, or --acpd-only): acpd's side alone")
    results = Results()
    for run in range(args.runs):
        order = sides if run % 2 == 0 else sides[::-1]
        for name in only:
            for side in order:
                if side == FLOOR and name not in FLOOR_METRICS:
                    continue
                t0 = time.perf_counter()
                await RUNNERS[name](side, sa, sizes, results)
                took = time.perf_counter() - t0
                print(f"round {run + 1}: {name} on {side} in {took:.1f} s, load {os.getloadavg()[0]:.2f}")
        if args.json:  # a round at a time, so that a run cut short keeps what it measured
            args.json.write_text(json.dumps({**info, "rounds_done": run + 1, "values": results.values}, indent=1))
    info["load_end"] = load_now()
    print(f"load at end: {info['load_end']}")
    print()
    print(f"medians of {args.runs} round(s) [min–max of the rounds]:")  # noqa: RUF001
    for line in table(results):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({**info, "rounds_done": args.runs, "values": results.values}, indent=1))


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
