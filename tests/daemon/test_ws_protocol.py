"""The WebSocket face's protocol: writes made in one turn of the event loop go out as one write,
and permessage-deflate is offered to clients on other hosts only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from acpd.daemon.ws_protocol import FLUSH_BYTES, CoalescingTransport, ProblemWebSocketProtocol, is_loopback

pytestmark = pytest.mark.anyio


class RecordingTransport(asyncio.Transport):
    def __init__(self, peer: tuple[str, int] | None = ("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self._peer = peer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peer if name == "peername" else default


async def test_writes_made_in_one_loop_turn_go_out_as_one_write_in_order() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    for n in range(100):
        transport.write(b"m%d;" % n)
    assert inner.written == []
    await asyncio.sleep(0)
    assert inner.written == [b"".join(b"m%d;" % n for n in range(100))]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.written[1:] == [b"next"]


async def test_a_burst_past_the_flush_size_goes_out_at_once_so_flow_control_sees_it() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"x" * (FLUSH_BYTES - 1))
    assert inner.written == []
    transport.write(b"yy")
    assert [len(data) for data in inner.written] == [FLUSH_BYTES + 1]
    assert transport.get_write_buffer_size() == 0


async def test_close_sends_what_was_gathered_before_closing() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert inner.written == [b"last words"] and inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
    assert inner.written == [b"last words"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.2", False),
        ("203.0.113.5", False),
        ("2001:db8::1", False),
        ("localhost", False),
    ],
)
def test_is_loopback_knows_loopback_addresses_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("peer", "offered"), [(("127.0.0.1", 1), False), (("203.0.113.5", 1), True), (None, False)])
async def test_deflate_is_offered_to_clients_on_other_hosts_only(peer: tuple[str, int] | None, offered: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = uvicorn.Config(app, ws_per_message_deflate=True)
    config.load()
    protocol = ProblemWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(RecordingTransport(peer))
    assert bool(protocol.conn.available_extensions) is offered


def _open_protocol(extensions: list[Any] | None = None) -> tuple[ProblemWebSocketProtocol, RecordingTransport]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = uvicorn.Config(app)
    config.load()
    protocol = ProblemWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    inner = RecordingTransport()
    protocol.connection_made(inner)
    protocol.conn.state = State.OPEN  # as after an accepted handshake
    protocol.handshake_complete = True
    protocol.conn.extensions = extensions or []
    return protocol, inner


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200_000])
async def test_write_text_writes_one_frame_a_client_reads_back_as_the_message(size: int) -> None:
    protocol, inner = _open_protocol()
    message = "é".encode() * (size // 2) + b"x" * (size % 2)
    assert protocol.write_text(message)
    await asyncio.sleep(0)
    reader = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    reader.receive_data(b"".join(inner.written))
    [frame] = reader.events_received()
    assert isinstance(frame, Frame) and frame.opcode is Opcode.TEXT and frame.fin and frame.data == message


async def test_write_text_declines_when_an_extension_is_on_or_writing_is_paused() -> None:
    protocol, inner = _open_protocol(extensions=[object()])
    assert not protocol.write_text(b"{}")
    protocol, inner = _open_protocol()
    protocol.pause_writing()
    assert not protocol.write_text(b"{}")
    protocol.resume_writing()
    assert protocol.write_text(b"{}")
    await asyncio.sleep(0)
    assert inner.written == [b"\x81\x02{}"]
