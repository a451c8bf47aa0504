"""RecordingTransport: every frame both ways, in order, in a file only its owner can read."""

from __future__ import annotations

import stat
from pathlib import Path

import anyio
import pytest

from acpd.protocol import jsonio
from acpd.transports.memory import create_memory_transport_pair
from acpd.transports.recording import RecordingTransport

pytestmark = pytest.mark.anyio


async def test_frames_both_ways_are_recorded_in_order_in_a_private_file(tmp_path: Path) -> None:
    ours, theirs = create_memory_transport_pair()
    path = tmp_path / "rec" / "s.agent.jsonl"
    recording = RecordingTransport(ours, path)
    with anyio.fail_after(5):
        await recording.send(b'{"id":1,"method":"initialize"}')
        assert await theirs.receive() == [b'{"id":1,"method":"initialize"}']
        await theirs.send(b"not json")
        await theirs.send(b'{"id":1,"result":{}}')
        received = await recording.receive()
        while len(received) < 2:
            received += await recording.receive()
        await recording.aclose()
        await theirs.aclose()
    lines = [jsonio.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"dir": "out", "frame": {"id": 1, "method": "initialize"}},
        {"dir": "in", "frame": "not json"},
        {"dir": "in", "frame": {"id": 1, "result": {}}},
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
