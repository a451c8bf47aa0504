"""The ACP face, against a real daemon: prompt round trip, streaming throughput and session create.

Five transports of the same ``AcpConnection`` (``initialize`` → ``session/new`` → ``session/prompt``):

- ``ws``: WebSocket ``/v1/rpc?agent=mock``, one JSON-RPC message per text frame (the ``websockets``
  client, with its default permessage-deflate unless ``--no-ws-deflate``);
- ``http``: ACP over HTTP, sandbox-agent compatible: ``POST /v1/acp/{id}`` per envelope (200 with the
  response in the body), with an SSE reader open on ``GET /v1/acp/{id}`` as sandbox-agent's SDK has;
- ``stdio``: ``acpd acp --url URL``, NDJSON on its stdin/stdout, relayed to the daemon's ``/v1/rpc``;
- ``acp-http``: ACP's own Streamable HTTP transport on ``/acp``, as the official SDKs use it: a POST
  per message (202; ``initialize`` 200 with ``Acp-Connection-Id``), every answer and update read off
  the connection's SSE stream and the session's (opened once ``session/new`` named the session);
- ``acp-ws``: the same endpoint upgraded to a WebSocket, one message per text frame.

1. Prompt round trip: a one-chunk turn (``text hi``: one ``agent_message_chunk``, then
   ``{"stopReason": "end_turn"}``), after 20 warm-ups; from writing the request to reading the
   response (the update comes first). For ``http``, also when the response showed up on the SSE stream;
   for ``acp-http``, the response is only there: from the POST to reading it off the session's stream.
2. Throughput: one turn of ``chunks N``, from the request to its response, which comes after every
   update. ``ws`` and ``stdio`` count the updates on the connection; ``http`` counts them on the SSE
   stream until the prompt's response appears there (``acp-http``: on the session's stream). Loss = N
   minus the chunk updates received; the chunk texts ``c0``…``c<N-1>`` must arrive in order, and SSE
   ids must be contiguous (``acp-http``: increasing along each stream, whose ids number the
   connection's messages across its streams).
3. Session create over ACP-over-HTTP: ``initialize`` on a fresh connection id (``?agent=mock``), then
   ``session/new`` (which spawns the mock agent).

Compare with ``benchmarks/latency.py`` (the REST face's blocking prompt) and with sandbox-agent 0.4.2
on the same kind of 2-vCPU machine: raw-HTTP prompt round trip 0.49 ms (builtin agent; 0.53 ms with a
Python mock), SSE to one subscriber ≈50-64 k events/s, losing 3-32 % of a 100 k burst (its fan-out
drops a subscriber that falls 512 messages behind, with no gap signal).

The REST rows use a bare HTTP/1.1 client next to httpx: httpx itself adds about 0.4 ms a request
here, which would otherwise hide most of the daemon's cost in a sub-millisecond comparison.

    .venv/bin/python benchmarks/acp_face.py --prompts 300 --chunks 100000
    .venv/bin/python benchmarks/acp_face.py --faces ws,stdio --runs 3
    .venv/bin/python benchmarks/acp_face.py --faces acp-http,acp-ws --runs 3 --sessions 0

Measured on a 2-vCPU VM (daemon, agent and client share it), 10 runs of the first command, each on a
fresh daemon: medians of the runs' medians, [range of the runs' medians].

- Prompt round trip: WebSocket 1.16 ms [1.03-1.35]; ``acpd acp`` relay 1.77 ms [1.59-2.28];
  ACP-over-HTTP POST 2.43 ms [2.21-2.93] with httpx, 1.76 ms [1.64-1.90] with the bare client (its
  response read on SSE: 1.71 ms); REST blocking prompt with the bare client 1.02 ms [0.97-1.29], with
  httpx (``latency.py``, 3 runs) 1.62 ms [1.52-1.64]. Of the POST's extra over REST, about 0.35 ms is
  its wait for the response's commit to the connection's own log (the SSE copy).
- Throughput of a 100 k-chunk turn, none lost, in order, SSE ids contiguous in every run:
  ACP-over-HTTP SSE 46 k events/s [44.3-48.3 k]; WebSocket 28 k [26.7-28.5 k]; ``acpd acp`` relay
  27 k [25.1-30.2 k] (fed by the WebSocket). REST SSE (``throughput.py``, 3 runs): 112 k [109-116 k].
- Session create over ACP-over-HTTP: 81 ms [73-84] (initialize on a fresh connection 1.9 ms,
  session/new 78 ms: starting the Python mock agent).

``/acp``, one run of the last command with ``--faces acp-http,acp-ws,http,ws --prompts 300``, 3
turns each, the machine busy with other work (load 4.0-4.2): prompt round trip 1.94 ms over
Streamable HTTP (POST → 202, the answer read off the session's stream), 1.73 ms over WebSocket
``/acp`` (the same run: ``/v1/acp`` 1.91 ms with the bare client, ``/v1/rpc`` 1.33 ms); a
100,000-chunk turn 117 k events/s [112-128 k] over Streamable HTTP, 95 k [67-96 k] over WebSocket
``/acp``, none lost, in order, SSE ids increasing (the same run: ``/v1/acp`` 96 k, ``/v1/rpc`` 100 k).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx
import orjson
from _daemon import acpd_daemon
from anyio.abc import Process, SocketStream, TaskGroup, TaskStatus
from websockets.asyncio.client import ClientConnection, connect

from acpd.testing.daemon import daemon_env

WARM_UPS: Final = 20
FACES: Final = ("ws", "http", "stdio", "acp-http", "acp-ws")
CHUNK_MARK: Final = b'"agent_message_chunk"'
CHUNK_TEXT: Final = re.compile(rb'"text":"c(\d+) "')
TURN_TIMEOUT_SECONDS: Final = 600.0
SANDBOX_AGENT_PROMPT: Final = "sandbox-agent 0.4.2: raw-HTTP POST session/prompt 0.49 ms (0.53 ms with a Python mock)"
SANDBOX_AGENT_CREATE: Final = (
    "sandbox-agent 0.4.2: initialize + session/new 37.2 ms with a Python mock (4.8 ms builtin)"
)
SANDBOX_AGENT_SSE: Final = "sandbox-agent 0.4.2: SSE ≈50-64 k events/s to one subscriber, 3-32 % lost at 100 k"

Message = dict[str, Any]


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[math.ceil(len(ordered) * 0.9) - 1]
    return f"{name}: median {statistics.median(ordered) * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms (n={len(ordered)})"


def request(request_id: int, method: str, params: Message) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def prompt_params(session_id: str, text: str) -> Message:
    return {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}


class Tally:
    """The ``agent_message_chunk`` updates seen since ``reset()``, and whether ``c<i>`` came in order."""

    def __init__(self) -> None:
        self.chunks = 0
        self.next_index = 0
        self.disorder = 0
        self.started = time.perf_counter()
        self.first = math.nan

    def reset(self) -> None:
        self.chunks = self.next_index = self.disorder = 0
        self.started = time.perf_counter()
        self.first = math.nan

    def see(self, data: bytes) -> None:
        if CHUNK_MARK not in data:
            return
        if not self.chunks:
            self.first = time.perf_counter() - self.started
        self.chunks += 1
        match = CHUNK_TEXT.search(data)
        if match is not None:
            index = int(match.group(1))
            self.disorder += index != self.next_index
            self.next_index = index + 1


def response_id(data: bytes) -> object:
    """The id of a JSON-RPC response (no ``method``), else None. Cheap for the many updates."""
    if b'"method"' in data:
        return None
    message = orjson.loads(data)
    return message.get("id") if isinstance(message, dict) else None


class RawHttp:
    """A bare HTTP/1.1 keep-alive client (Content-Length bodies only): what the daemon costs without
    httpx's own per-request overhead (about 0.4 ms of a GET /v1/health round trip on this kind of machine)."""

    def __init__(self, stream: SocketStream, host: str) -> None:
        self._stream = stream
        self._host = host
        self._buffer = b""

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[RawHttp]:
        parts = urlsplit(url)
        async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
            yield cls(stream, parts.netloc)

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        await self._stream.send(head.encode() + body)
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        head_bytes, _, rest = self._buffer.partition(b"\r\n\r\n")
        status_line, *fields = head_bytes.split(b"\r\n")
        length = 0
        for field in fields:
            name, _, value = field.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            assert name.strip().lower() != b"transfer-encoding", "only Content-Length bodies"
        while len(rest) < length:
            rest += await self._stream.receive()
        self._buffer = rest[length:]
        return int(status_line.split()[1]), rest[:length]


class Face:
    """One ACP client connection to acpd. ``call`` returns a request's response message."""

    name = ""
    lag_samples: list[float]

    def __init__(self) -> None:
        self.tally = Tally()
        self.lag_samples = []
        self._next_id = 0

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def call(self, method: str, params: Message) -> Message:
        raise NotImplementedError

    async def initialized(self) -> None:
        pass

    async def turn(self, session_id: str, text: str) -> tuple[float, Message]:
        """Send a prompt; (seconds until its response was delivered, the response)."""
        t0 = time.perf_counter()
        response = await self.call("session/prompt", prompt_params(session_id, text))
        return time.perf_counter() - t0, response

    def check_stream(self) -> str:
        return ""


class WsFace(Face):
    name = "WebSocket /v1/rpc"

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__()
        self.ws = ws

    async def call(self, method: str, params: Message) -> Message:
        request_id = self.new_id()
        await self.ws.send(orjson.dumps(request(request_id, method, params)).decode())
        while True:
            frame = await self.ws.recv(decode=False)
            self.tally.see(frame)
            if response_id(frame) == request_id:
                message: Message = orjson.loads(frame)
                return message


class StdioFace(Face):
    name = "acpd acp (stdio relay)"

    def __init__(self, process: Process) -> None:
        super().__init__()
        self.process = process
        self._lines: list[bytes] = []
        self._tail = b""

    async def _line(self) -> bytes:
        assert self.process.stdout is not None
        while not self._lines:
            data = self._tail + await self.process.stdout.receive(1 << 20)
            *complete, self._tail = data.split(b"\n")
            complete.reverse()
            self._lines = complete
        return self._lines.pop()

    async def call(self, method: str, params: Message) -> Message:
        assert self.process.stdin is not None
        request_id = self.new_id()
        await self.process.stdin.send(orjson.dumps(request(request_id, method, params)) + b"\n")
        while True:
            line = await self._line()
            self.tally.see(line)
            if response_id(line) == request_id:
                message: Message = orjson.loads(line)
                return message


class HttpFace(Face):
    """POST per envelope; a background SSE reader tallies the stream and notes when responses arrive."""

    name = "ACP-over-HTTP POST, httpx (SSE open)"

    def __init__(self, http: httpx.AsyncClient, connection_id: str, tg: TaskGroup) -> None:
        super().__init__()
        self.http = http
        self.tg = tg
        self.path = f"/v1/acp/{connection_id}"
        self.last_event_id = 0
        self.id_errors = 0
        self.events = 0
        self.on_sse: dict[object, float] = {}
        self._arrived = anyio.Event()
        self.raw: RawHttp | None = None
        """When set, POSTs go through it instead of httpx."""

    async def call(self, method: str, params: Message) -> Message:
        body = request(self.new_id(), method, params)
        if self.raw is not None:
            status, data = await self.raw.post(self.path + "?agent=mock", orjson.dumps(body))
            assert status == 200, data
            message_raw: Message = orjson.loads(data)
            return message_raw
        response = await self.http.post(self.path, params={"agent": "mock"}, json=body)
        response.raise_for_status()
        message: Message = response.json()
        return message

    async def initialized(self) -> None:
        """The connection exists once it was POSTed to: open the SSE stream (from the log's start)."""
        await self.tg.start(self.read_sse)

    async def read_sse(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with self.http.stream("GET", self.path) as response:
            response.raise_for_status()
            task_status.started()
            tail = b""
            async for raw in response.aiter_raw():
                blocks = (tail + raw).split(b"\n\n")
                tail = blocks.pop()
                arrived = False
                for block in blocks:
                    arrived |= self._event(block)
                if arrived:
                    self._arrived.set()
                    self._arrived = anyio.Event()

    def _event(self, block: bytes) -> bool:
        """Tally one SSE event; True if it was a response."""
        event_id = data = None
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"id: "):
                event_id = int(line[4:])
        if data is None:
            return False  # retry: or a keep-alive
        self.events += 1
        if event_id is None or event_id != self.last_event_id + 1:
            self.id_errors += 1
        self.last_event_id = event_id or self.last_event_id
        self.tally.see(data)
        rid = response_id(data)
        if rid is None:
            return False
        self.on_sse[rid] = time.perf_counter()
        return True

    async def wait_sse(self, request_id: object) -> float:
        """When the response to ``request_id`` was read off the SSE stream."""
        while request_id not in self.on_sse:
            await self._arrived.wait()
        return self.on_sse[request_id]

    async def turn(self, session_id: str, text: str) -> tuple[float, Message]:
        """Timed until the response shows up on SSE (every update is before it in the log)."""
        request_id = self._next_id + 1
        result: list[Message] = []

        async def post() -> None:
            result.append(await self.call("session/prompt", prompt_params(session_id, text)))

        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            tg.start_soon(post)
            seen = await self.wait_sse(request_id)
        return seen - t0, result[0]

    async def timed_prompt(self, session_id: str, text: str) -> float:
        """The POST's round trip; notes separately how long until the SSE copy arrived."""
        request_id = self._next_id + 1
        t0 = time.perf_counter()
        response = await self.call("session/prompt", prompt_params(session_id, text))
        elapsed = time.perf_counter() - t0
        assert response["result"]["stopReason"] == "end_turn", response
        self.lag_samples.append(await self.wait_sse(request_id) - t0)
        return elapsed

    def check_stream(self) -> str:
        return f", SSE ids {'contiguous' if self.id_errors == 0 else f'with {self.id_errors} gaps/repeats'}"


class AcpHttpFace(Face):
    """ACP's Streamable HTTP transport on ``/acp``, used as the official SDKs use it: POST per
    message (202; ``initialize`` 200), the answers and updates read off the connection's SSE stream
    and, once ``session/new`` named the session, the session's. POSTs go through the bare client."""

    name = "/acp Streamable HTTP, raw POST (202) + SSE"

    def __init__(self, http: httpx.AsyncClient, raw: RawHttp, tg: TaskGroup) -> None:
        super().__init__()
        self.http = http
        self.raw = raw
        self.tg = tg
        self.connection_id = ""
        self.answers: dict[object, tuple[float, Message]] = {}
        self.id_errors = 0
        self._arrived = anyio.Event()

    async def call(self, method: str, params: Message) -> Message:
        request_id = self.new_id()
        await self.send(request_id, method, params)
        _, message = await self.answer(request_id)
        opened = message.get("result", {}).get("sessionId") if method in ("session/new", "session/fork") else None
        if opened:
            await self.tg.start(self.read_sse, opened)
        return message

    async def send(self, request_id: int, method: str, params: Message) -> None:
        body = request(request_id, method, params)
        if method == "initialize":
            response = await self.http.post("/acp", params={"agent": "mock"}, json=body)
            response.raise_for_status()
            self.connection_id = response.headers["Acp-Connection-Id"]
            self.answers[request_id] = (time.perf_counter(), response.json())
            await self.tg.start(self.read_sse, None)
            return
        headers = {"Acp-Connection-Id": self.connection_id}
        if method in ("session/prompt", "session/cancel", "session/set_mode"):
            headers["Acp-Session-Id"] = params["sessionId"]
        status, data = await self.raw.post("/acp", orjson.dumps(body), headers)
        assert status == 202, data

    async def answer(self, request_id: object) -> tuple[float, Message]:
        """(when it was read off a stream, the answer to ``request_id``)."""
        while request_id not in self.answers:
            await self._arrived.wait()
        return self.answers.pop(request_id)

    async def read_sse(self, session_id: str | None, *, task_status: TaskStatus[None]) -> None:
        headers = {"Accept": "text/event-stream", "Acp-Connection-Id": self.connection_id}
        if session_id is not None:
            headers["Acp-Session-Id"] = session_id
        async with self.http.stream("GET", "/acp", headers=headers) as response:
            response.raise_for_status()
            task_status.started()
            tail = b""
            last_id = 0
            async for raw in response.aiter_raw():
                blocks = (tail + raw).split(b"\n\n")
                tail = blocks.pop()
                for block in blocks:
                    last_id = self._event(block, last_id)
                self._arrived.set()
                self._arrived = anyio.Event()

    def _event(self, block: bytes, last_id: int) -> int:
        """Tally one SSE event; the stream's last id (ids increase along a stream)."""
        event_id = data = None
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"id: "):
                event_id = int(line[4:])
        if data is None:
            return last_id  # retry: or a keep-alive
        if event_id is None or event_id <= last_id:
            self.id_errors += 1
        self.tally.see(data)
        rid = response_id(data)
        if rid is not None:
            self.answers[rid] = (time.perf_counter(), orjson.loads(data))
        return event_id or last_id

    async def turn(self, session_id: str, text: str) -> tuple[float, Message]:
        """From the POST to the answer read off the session's stream (after every update)."""
        request_id = self.new_id()
        t0 = time.perf_counter()
        await self.send(request_id, "session/prompt", prompt_params(session_id, text))
        seen, response = await self.answer(request_id)
        return seen - t0, response

    def check_stream(self) -> str:
        return f", SSE ids {'increasing' if self.id_errors == 0 else f'with {self.id_errors} repeats'}"


@asynccontextmanager
async def ws_face(url: str, deflate: bool, path: str = "/v1/rpc") -> AsyncIterator[Face]:
    ws_url = url.replace("http://", "ws://", 1).rstrip("/") + path + "?agent=mock"
    async with connect(ws_url, max_size=None, compression="deflate" if deflate else None) as ws:
        face = WsFace(ws)
        face.name = f"WebSocket {path}"
        yield face


@asynccontextmanager
async def acp_http_face(url: str) -> AsyncIterator[Face]:
    async with httpx.AsyncClient(base_url=url, timeout=TURN_TIMEOUT_SECONDS) as http, RawHttp.open(url) as raw:
        async with anyio.create_task_group() as tg:
            face = AcpHttpFace(http, raw, tg)
            try:
                yield face
            finally:
                tg.cancel_scope.cancel()
        if face.connection_id:
            await http.delete("/acp", headers={"Acp-Connection-Id": face.connection_id})


@asynccontextmanager
async def http_face(url: str) -> AsyncIterator[Face]:
    async with httpx.AsyncClient(base_url=url, timeout=TURN_TIMEOUT_SECONDS) as http:
        async with anyio.create_task_group() as tg:
            face = HttpFace(http, f"bench-{uuid.uuid4().hex[:12]}", tg)
            try:
                yield face
            finally:
                tg.cancel_scope.cancel()
        await http.delete(face.path)


@asynccontextmanager
async def stdio_face(url: str, home: Path) -> AsyncIterator[Face]:
    process = await anyio.open_process(
        [sys.executable, "-m", "acpd", "acp", "--url", url], env=daemon_env(home), stderr=subprocess.DEVNULL
    )
    async with process:
        try:
            yield StdioFace(process)
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.move_on_after(10) as scope:
                await process.wait()
            if scope.cancelled_caught:
                process.kill()


async def open_session(face: Face, cwd: str, rest: httpx.AsyncClient) -> str:
    initialized = await face.call("initialize", {"protocolVersion": 1})
    assert initialized["result"]["protocolVersion"] == 1, initialized
    await face.initialized()
    created = await face.call("session/new", {"cwd": cwd, "mcpServers": []})
    session_id: str = created["result"]["sessionId"]
    # the session must be the daemon's (the stdio relay would otherwise have gone standalone)
    (await rest.get(f"/v1/sessions/{session_id}")).raise_for_status()
    return session_id


async def round_trips(face: Face, session_id: str, prompts: int) -> list[float]:
    prompt: Callable[[str, str], Awaitable[float]]
    if isinstance(face, HttpFace):
        prompt = face.timed_prompt
    else:

        async def prompt(sid: str, text: str) -> float:
            elapsed, response = await face.turn(sid, text)
            assert response["result"]["stopReason"] == "end_turn", response
            return elapsed

    for _ in range(WARM_UPS):
        await prompt(session_id, "text hi")
    face.lag_samples.clear()
    return [await prompt(session_id, "text hi") for _ in range(prompts)]


async def prompt_phase(opened: list[tuple[Face, str]], url: str, prompts: int) -> None:
    print(f"prompt round trip (one-chunk turn, after {WARM_UPS} warm-ups):")
    print(f"  [reference: {SANDBOX_AGENT_PROMPT}; REST with httpx: benchmarks/latency.py]")
    for face, session_id in opened:
        print("  " + summary(face.name, await round_trips(face, session_id, prompts)))
        if not isinstance(face, HttpFace):
            continue
        print("  " + summary("  POST sent -> response read on SSE", face.lag_samples))
        async with RawHttp.open(url) as raw:
            face.raw = raw
            samples = await round_trips(face, session_id, prompts)
            face.raw = None
        print("  " + summary("ACP-over-HTTP POST, raw HTTP/1.1 client (SSE open)", samples))
        print("  " + summary("  POST sent -> response read on SSE", face.lag_samples))
        print(
            "  "
            + summary("REST blocking POST /v1/sessions/{id}/prompt, raw HTTP/1.1 client", await rest_raw(url, prompts))
        )


async def rest_raw(url: str, prompts: int) -> list[float]:
    """The REST face's prompt round trip (as benchmarks/latency.py measures it), without httpx."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        session_id = (await http.post("/v1/sessions", json={"agent": "mock"})).json()["id"]
    path = f"/v1/sessions/{session_id}/prompt"
    body = orjson.dumps({"prompt": "text hi"})
    samples = []
    async with RawHttp.open(url) as raw:
        for i in range(WARM_UPS + prompts):
            t0 = time.perf_counter()
            status, data = await raw.post(path, body)
            elapsed = time.perf_counter() - t0
            assert status == 200 and orjson.loads(data)["stopReason"] == "end_turn", data
            if i >= WARM_UPS:
                samples.append(elapsed)
    return samples


async def throughput(face: Face, session_id: str, chunks: int) -> tuple[float, str]:
    face.tally.reset()
    with anyio.fail_after(TURN_TIMEOUT_SECONDS):
        seconds, response = await face.turn(session_id, f"chunks {chunks}")
    assert response["result"]["stopReason"] == "end_turn", response
    tally = face.tally
    rate = tally.chunks / seconds
    lost = chunks - tally.chunks
    line = (
        f"{face.name}: {tally.chunks} chunk updates in {seconds:.3f} s = {rate:,.0f} events/s; "
        f"lost {lost} ({lost / chunks:.1%}), out of order {tally.disorder}{face.check_stream()}; "
        f"first chunk {tally.first * 1000:.1f} ms after the request"
    )
    return rate, line


async def session_creates(url: str, cwd: str, sessions: int) -> tuple[list[float], list[float], list[float]]:
    inits, news, totals = [], [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for _ in range(sessions):
            path = f"/v1/acp/bench-create-{uuid.uuid4().hex[:12]}"
            t0 = time.perf_counter()
            init = await http.post(
                path, params={"agent": "mock"}, json=request(1, "initialize", {"protocolVersion": 1})
            )
            t1 = time.perf_counter()
            new = await http.post(path, json=request(2, "session/new", {"cwd": cwd, "mcpServers": []}))
            t2 = time.perf_counter()
            assert init.status_code == 200 and "result" in new.json(), new.text
            inits.append(t1 - t0)
            news.append(t2 - t1)
            totals.append(t2 - t0)
            await http.delete(path)
    return inits, news, totals


async def open_face(stack: AsyncExitStack, name: str, url: str, home: Path, ws_deflate: bool) -> Face:
    if name == "ws":
        return await stack.enter_async_context(ws_face(url, ws_deflate))
    if name == "acp-ws":
        return await stack.enter_async_context(ws_face(url, ws_deflate, "/acp"))
    if name == "acp-http":
        return await stack.enter_async_context(acp_http_face(url))
    if name == "http":
        return await stack.enter_async_context(http_face(url))
    return await stack.enter_async_context(stdio_face(url, home))


async def measure(url: str, args: argparse.Namespace, home: Path) -> None:
    faces = [f.strip() for f in args.faces.split(",") if f.strip()]
    unknown = set(faces) - set(FACES)
    if unknown:
        raise SystemExit(f"unknown faces: {sorted(unknown)}; pick from {','.join(FACES)}")
    cwd = str(home)
    async with AsyncExitStack() as stack:
        rest = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        opened: list[tuple[Face, str]] = []
        for name in faces:
            face = await open_face(stack, name, url, home, args.ws_deflate)
            opened.append((face, await open_session(face, cwd, rest)))
        if args.prompts:
            await prompt_phase(opened, url, args.prompts)
        if args.sessions and "http" in faces:
            inits, news, totals = await session_creates(url, cwd, args.sessions)
            print("session create over ACP-over-HTTP (fresh connection):")
            print(f"  [reference: {SANDBOX_AGENT_CREATE}]")
            print("  " + summary("initialize + session/new (spawns the mock agent)", totals))
            print("  " + summary("  initialize (creates the connection)", inits))
            print("  " + summary("  session/new", news))
        if args.chunks:
            print(f"throughput (one turn of chunks {args.chunks}, request -> response after every update):")
            print(f"  [reference: {SANDBOX_AGENT_SSE}; REST SSE: benchmarks/throughput.py]")
            for face, session_id in opened:
                rates = []
                for _ in range(args.runs):
                    rate, line = await throughput(face, session_id, args.chunks)
                    rates.append(rate)
                    print("  " + line)
                if args.runs > 1:
                    print(f"  {face.name}: median {statistics.median(rates):,.0f} events/s over {args.runs} turns")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=300, help="timed one-chunk prompts per face (0: skip)")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the throughput turn (0: skip)")
    parser.add_argument("--runs", type=int, default=1, help="throughput turns per face")
    parser.add_argument("--sessions", type=int, default=20, help="ACP-over-HTTP session creates (0: skip)")
    parser.add_argument("--faces", default=",".join(FACES), help=f"comma-separated, from {','.join(FACES)}")
    parser.add_argument("--no-ws-deflate", dest="ws_deflate", action="store_false", help="WebSocket without deflate")
    parser.add_argument("--url", help="use a running daemon (started with --no-auth) instead of starting one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acpd-bench-face-") as home:
        if args.url:
            await measure(args.url, args, Path(home))
        else:
            async with acpd_daemon() as url:
                await measure(url, args, Path(home))


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
