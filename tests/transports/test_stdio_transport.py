"""StdioTransport in process over os.pipe() pairs and regular files, and once as a real process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from acpd.errors import ConnectionClosed
from acpd.protocol import jsonio
from acpd.protocol.framing import Frame
from acpd.transports import Transport
from acpd.transports.process import ProcessSpec, open_process_transport
from acpd.transports.stdio import StdioTransport, open_stdio_transport

pytestmark = pytest.mark.anyio

STDIO_ECHO = Path(__file__).parent / "fixtures" / "stdio_echo.py"


@dataclass
class Pipes:
    """The far ends of the transport's descriptors: we write its stdin, we read its stdout."""

    stdin_r: int
    stdin_w: int
    stdout_r: int
    stdout_w: int

    def close_stdin(self) -> None:
        os.close(self.stdin_w)
        self.stdin_w = -1

    async def read_lines(self, count: int) -> list[bytes]:
        chunks: list[bytes] = []
        seen = 0
        while seen < count:
            chunks.append(await anyio.to_thread.run_sync(os.read, self.stdout_r, 1 << 20))
            seen += chunks[-1].count(b"\n")
        return b"".join(chunks).splitlines()


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    pair = Pipes(*os.pipe(), *os.pipe())
    yield pair
    for fd in (pair.stdin_r, pair.stdin_w, pair.stdout_r, pair.stdout_w):
        if fd >= 0:
            os.close(fd)


async def receive_all(transport: StdioTransport) -> list[Frame]:
    frames: list[Frame] = []
    while True:
        try:
            frames += await transport.receive()
        except anyio.EndOfStream:
            return frames


async def test_frames_cross_a_pipe_pair_both_ways(pipes: Pipes) -> None:
    with anyio.fail_after(5):
        async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as stdio:
            transport: Transport = stdio  # mypy checks the Protocol
            os.write(pipes.stdin_w, b'{"id":1}\n{"id":2}\n')
            assert await transport.receive() == [b'{"id":1}', b'{"id":2}']
            await transport.send(b'{"id":3}')
            assert await pipes.read_lines(1) == [b'{"id":3}']


async def test_end_of_stdin_delivers_the_unterminated_last_line_then_end_of_stream(pipes: Pipes) -> None:
    os.write(pipes.stdin_w, b'{"a":1}\n{"last":true}')
    pipes.close_stdin()
    with anyio.fail_after(5):
        async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport:
            assert await receive_all(transport) == [b'{"a":1}', b'{"last":true}']
            with pytest.raises(anyio.EndOfStream):
                await transport.receive()


async def test_concurrent_senders_never_interleave_lines(pipes: Pipes) -> None:
    senders, per_sender = 20, 100

    async def send_many(transport: StdioTransport, sender: int) -> None:
        for n in range(per_sender):
            await transport.send(jsonio.dumps({"sender": sender, "n": n, "pad": "x" * 5000}))

    lines: list[bytes] = []

    async def read_all() -> None:
        lines.extend(await pipes.read_lines(senders * per_sender))

    with anyio.fail_after(5):
        async with (
            open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read_all)
            for sender in range(senders):
                tg.start_soon(send_many, transport, sender)
    received = [jsonio.loads(line) for line in lines]
    for sender in range(senders):
        assert [m["n"] for m in received if m["sender"] == sender] == list(range(per_sender))


async def test_aclose_ends_a_pending_receive(pipes: Pipes) -> None:
    with anyio.fail_after(5):
        async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport:

            async def expect_end() -> None:
                with pytest.raises(anyio.EndOfStream):
                    await transport.receive()

            async with anyio.create_task_group() as tg:
                tg.start_soon(expect_end)
                await anyio.wait_all_tasks_blocked()
                await transport.aclose()


async def test_a_cancelled_receive_loses_no_bytes(pipes: Pipes) -> None:
    with anyio.fail_after(5):
        async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport:
            async with anyio.create_task_group() as tg:
                tg.start_soon(transport.receive)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
            os.write(pipes.stdin_w, b'{"kept":true}\n')
            assert await transport.receive() == [b'{"kept":true}']


async def test_aclose_releases_a_send_stuck_on_a_full_pipe(pipes: Pipes) -> None:
    # Nobody reads stdout, so a 1 MiB frame cannot fit in the pipe.
    with anyio.fail_after(5):
        async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport:

            async def expect_closed() -> None:
                with pytest.raises(ConnectionClosed):
                    await transport.send(b'"' + b"z" * (1 << 20) + b'"')

            async with anyio.create_task_group() as tg:
                tg.start_soon(expect_closed)
                await anyio.wait_all_tasks_blocked()
                await transport.aclose()


async def test_send_after_aclose_raises_connection_closed_and_aclose_is_idempotent(pipes: Pipes) -> None:
    async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport:
        await transport.aclose()
        await transport.aclose()
        with pytest.raises(ConnectionClosed):
            await transport.send(b"{}")
        with pytest.raises(anyio.EndOfStream):
            await transport.receive()


async def test_send_to_a_reader_that_went_away_raises_connection_closed(pipes: Pipes) -> None:
    os.close(pipes.stdout_r)
    pipes.stdout_r = -1
    async with open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport:
        # sends are buffered: the failed write shows by drain(), and on every send after it
        with pytest.raises(ConnectionClosed):
            await transport.send(b"{}")
            await transport.drain()
        with pytest.raises(ConnectionClosed):
            await transport.send(b"{}")


async def test_a_burst_of_sends_is_written_in_order_and_whole(pipes: Pipes) -> None:
    count = 20_000
    with anyio.fail_after(10):
        async with (
            open_stdio_transport(stdin_fd=pipes.stdin_r, stdout_fd=pipes.stdout_w) as transport,
            anyio.create_task_group() as tg,
        ):
            received: list[bytes] = []

            async def read_all() -> None:
                buffer = b""
                while len(received) < count:
                    buffer += await anyio.to_thread.run_sync(os.read, pipes.stdout_r, 1 << 16)
                    *lines, buffer = buffer.split(b"\n")
                    received.extend(lines)

            tg.start_soon(read_all)
            for n in range(count):
                await transport.send(b'{"n":%d}' % n)
    assert received == [b'{"n":%d}' % n for n in range(count)]


async def test_regular_files_work_as_stdin_and_stdout(tmp_path: Path) -> None:
    count = 100_000
    source, sink = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(b'{"n":%d}\n' % n for n in range(count)))
    with open(source, "rb") as stdin, open(sink, "wb") as stdout, anyio.fail_after(5):
        async with open_stdio_transport(stdin_fd=stdin.fileno(), stdout_fd=stdout.fileno()) as transport:
            frames = await receive_all(transport)
            await transport.send(b'{"done":true}')
    assert frames == [b'{"n":%d}' % n for n in range(count)]
    assert sink.read_bytes() == b'{"done":true}\n'


async def test_a_real_process_echoes_frames_over_its_own_stdio() -> None:
    spec = ProcessSpec(sys.executable, [str(STDIO_ECHO)])
    with anyio.fail_after(5):
        async with open_process_transport(spec) as agent:
            await agent.send(b'{"id":1}')
            await agent.send(b'{"id":2}')
            frames = await agent.receive()
            if len(frames) < 2:
                frames += await agent.receive()
            assert frames == [b'{"id":1}', b'{"id":2}']
    assert agent.returncode == 0


async def test_a_real_process_echoes_regular_files(tmp_path: Path) -> None:
    source, sink = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b'{"id":1}\n\n{"id":2}')
    with open(source, "rb") as stdin, open(sink, "wb") as stdout, anyio.fail_after(5):
        await anyio.run_process([sys.executable, str(STDIO_ECHO)], stdin=stdin, stdout=stdout)
    assert sink.read_bytes() == b'{"id":1}\n{"id":2}\n'


async def test_a_process_exits_while_a_read_of_its_open_stdin_is_pending() -> None:
    # Its stdin stays open: a worker thread still blocked in read() would keep it alive at exit.
    spec = ProcessSpec(sys.executable, [str(STDIO_ECHO), "abandon"])
    with anyio.fail_after(5):
        async with open_process_transport(spec) as agent:
            assert await agent.receive() == [b'{"ready":true}']
            assert await agent.wait() == 0
