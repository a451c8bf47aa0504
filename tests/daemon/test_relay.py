"""``acpd acp``'s relay: what the daemon's WebSocket sends reaches stdout as NDJSON, one message or a
frame of lines (``framing=lines``) alike."""

from __future__ import annotations

import os

import anyio
import pytest
from websockets.exceptions import ConnectionClosed as WsClosed

from acpd.daemon.acp_stdio import INPUT_ENDED, _Outstanding, _ws_to_stdout, relay_over, rpc_url
from acpd.protocol import jsonio
from acpd.transports.stdio import open_stdio_transport

pytestmark = pytest.mark.anyio


class FakeWebSocket:
    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    async def recv(self, decode: bool = True) -> bytes:
        if not self._frames:
            raise WsClosed(None, None)
        return self._frames.pop(0)


def read_to_end(fd: int) -> bytes:
    written = b""
    while chunk := os.read(fd, 65536):
        written += chunk
    return written


async def test_the_relay_writes_a_frame_of_lines_whole_and_gives_a_single_message_its_newline() -> None:
    stdin_read, stdin_write = os.pipe()
    out_read, out_write = os.pipe()
    frames = [b'{"a":1}\n{"a":2}\n', b'{"b":3}', b'{"c":4}\n']
    try:
        with anyio.fail_after(5):
            async with open_stdio_transport(stdin_fd=stdin_read, stdout_fd=out_write) as stdio:
                fake = FakeWebSocket(frames)
                await _ws_to_stdout(fake, stdio, anyio.CancelScope(), _Outstanding())  # type: ignore[arg-type]
        os.close(out_write)
        written = read_to_end(out_read)
    finally:
        for fd in (stdin_read, stdin_write, out_read):
            os.close(fd)
    assert written == b'{"a":1}\n{"a":2}\n{"b":3}\n{"c":4}\n'


def test_the_relay_asks_the_daemon_for_frames_of_lines() -> None:
    assert rpc_url("http://127.0.0.1:7000", "mock") == "ws://127.0.0.1:7000/v1/rpc?framing=lines&agent=mock"
    assert rpc_url("https://host/base/", None) == "wss://host/base/v1/rpc?framing=lines"


class FakeDaemon:
    """A daemon's ``/v1/rpc`` as the relay sees it: it answers each request of the client in a task
    of its own, as a daemon answers later, and asks the client a question (a permission) before it
    answers a ``session/prompt``."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        self._out, self._in = anyio.create_memory_object_stream[bytes](100)
        self._requests, self._incoming = anyio.create_memory_object_stream[dict[str, object]](100)
        self._prompts: dict[str, object] = {}

    async def send(self, text: str) -> None:
        message = jsonio.loads(text)
        assert isinstance(message, dict)
        self.received.append(message)
        await self._requests.send(message)

    async def serve(self, answering: anyio.Event) -> None:
        await answering.wait()  # a daemon answers later than the client asks (and stdin ends)
        async for message in self._incoming:
            await self._out.send(jsonio.dumps(self._answer(message)) + b"\n")

    def _answer(self, message: dict[str, object]) -> dict[str, object]:
        if message.get("method") == "session/prompt":
            self._prompts[f"ask-{message['id']}"] = message["id"]
            return {"jsonrpc": "2.0", "id": f"ask-{message['id']}", "method": "session/request_permission"}
        if "method" in message:
            return {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        # the question answered: the prompt ends
        return {"jsonrpc": "2.0", "id": self._prompts.pop(str(message["id"])), "result": {"stopReason": "end_turn"}}

    def close(self) -> None:
        for stream in (self._out, self._in, self._requests, self._incoming):
            stream.close()

    async def recv(self, decode: bool = True) -> bytes:
        try:
            return await self._in.receive()
        except anyio.EndOfStream:
            raise WsClosed(None, None) from None


async def relayed(stdin: bytes, daemon: FakeDaemon) -> list[dict[str, object]]:
    """What the relay writes on stdout for ``stdin``, whose end comes right after it."""
    stdin_read, stdin_write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(stdin_write, stdin)
    os.close(stdin_write)
    try:
        with anyio.fail_after(5):
            async with (
                open_stdio_transport(stdin_fd=stdin_read, stdout_fd=out_write) as stdio,
                anyio.create_task_group() as tg,
            ):
                answering, relayed = anyio.Event(), anyio.Event()

                async def relay() -> None:
                    await relay_over(stdio, daemon)  # type: ignore[arg-type]
                    relayed.set()

                tg.start_soon(daemon.serve, answering)
                tg.start_soon(relay)
                await anyio.wait_all_tasks_blocked()  # the relay has read the end of stdin
                answering.set()
                await relayed.wait()
                tg.cancel_scope.cancel()
        os.close(out_write)
        written = read_to_end(out_read)
    finally:
        daemon.close()
        for fd in (stdin_read, out_read):
            os.close(fd)
    return [jsonio.loads(line) for line in written.splitlines()]


def request(request_id: int, method: str) -> bytes:
    return jsonio.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": {}}) + b"\n"


async def test_the_relay_answers_what_the_client_asked_before_its_stdin_ended() -> None:
    # a script that pipes its requests in got no answer, or some: the end of stdin ended the relay
    written = await relayed(request(1, "initialize") + request(2, "session/new"), FakeDaemon())
    assert [message["id"] for message in written] == [1, 2]


async def test_a_question_of_the_daemons_after_stdin_ended_is_answered_with_an_error_so_the_turn_ends() -> None:
    daemon = FakeDaemon()
    written = await relayed(request(7, "session/prompt"), daemon)
    assert written[0]["method"] == "session/request_permission"  # the client sees it asked
    assert written[-1] == {"jsonrpc": "2.0", "id": 7, "result": {"stopReason": "end_turn"}}
    assert daemon.received[-1] == {"jsonrpc": "2.0", "id": "ask-7", "error": INPUT_ENDED}
