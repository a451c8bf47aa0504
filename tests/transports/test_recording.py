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


async def test_what_the_scrub_masks_never_reaches_the_recording_and_an_old_readable_file_turns_private(
    tmp_path: Path,
) -> None:
    ours, theirs = create_memory_transport_pair()
    path = tmp_path / "s.agent.jsonl"
    path.write_text("")
    path.chmod(0o644)
    recording = RecordingTransport(ours, path, scrub=lambda text: text.replace("hunter2", "***"))
    with anyio.fail_after(5):
        await recording.send(b'{"password":"hunter2"}')
        await theirs.receive()
        await recording.aclose()
        await theirs.aclose()
    assert jsonio.loads(path.read_text()) == {"dir": "out", "frame": {"password": "***"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
