"""Benchmark: notifications per second through two JsonRpcPeers joined by a memory transport pair.

Run: ``.venv/bin/python benchmarks/rpc_peer.py [--count N] [--tap] [--uvloop]``. The payload is a
typical ACP ``session/update`` agent message chunk; the receiver's handler only counts.
"""

from __future__ import annotations

import argparse
import time
from typing import Final

import anyio

from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc import Direction, JsonRpcPeer
from acpd.transports.memory import create_memory_transport_pair

DEFAULT_COUNT: Final = 200_000
UPDATE: Final[JsonObject] = {
    "sessionId": "sess-0123456789",
    "update": {
        "sessionUpdate": "agent_message_chunk",
        "content": {"type": "text", "text": "Hello from the agent, one chunk of a longer answer. "},
        "_meta": {"acpd": {"seq": 17}},
    },
}


async def measure(count: int, with_tap: bool) -> float:
    """Notifications per second from one peer's ``notify`` to the other's handler."""
    received = 0
    all_received = anyio.Event()
    tapped: list[JsonObject] = []

    async def on_notification(method: str, params: JsonValue, message: JsonObject) -> None:
        nonlocal received
        received += 1
        if received == count:
            all_received.set()

    def tap(direction: Direction, message: JsonObject) -> None:
        tapped.append(message)

    sender_transport, receiver_transport = create_memory_transport_pair()
    sender = JsonRpcPeer(sender_transport, name="sender", tap=tap if with_tap else None)
    receiver = JsonRpcPeer(receiver_transport, name="receiver", on_notification=on_notification)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sender.run)
        tg.start_soon(receiver.run)
        started = time.perf_counter()
        for _ in range(count):
            await sender.notify("session/update", UPDATE)
        await all_received.wait()
        elapsed = time.perf_counter() - started
        await sender.aclose()
        await receiver.aclose()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--tap", action="store_true", help="also record every outgoing message in a tap")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")
    args = parser.parse_args()
    rate = anyio.run(measure, args.count, args.tap, backend_options={"use_uvloop": args.uvloop})
    print(f"{rate:,.0f} notifications/s ({args.count:,} notifications, tap={args.tap}, uvloop={args.uvloop})")


if __name__ == "__main__":
    main()
