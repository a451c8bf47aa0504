"""Test fixture: an ACP agent that replays a real agent's recorded conversation (``--record-agents``).

Usage: ``replay_agent.py RECORDING.jsonl``. The recording is a sequence of frames to the agent
(``out``) and from it (``in``). For each message the client sends, the replay finds the next
recorded ``out`` frame of the same kind (the same method, or a response) and then writes the ``in``
frames recorded after it, up to the next ``out`` frame. A recorded response to a client request
gets the id of the request it now answers. Messages with no recorded counterpart are ignored.
Stdlib only.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def kind(message: dict[str, Any]) -> str:
    return str(message["method"]) if "method" in message else "response"


def main(path: str) -> None:
    with open(path, encoding="utf-8") as recording:
        entries = [json.loads(line) for line in recording if line.strip()]
    cursor = 0
    for line in sys.stdin:
        message = json.loads(line)
        found = next(
            (
                i
                for i in range(cursor, len(entries))
                if entries[i]["dir"] == "out" and kind(entries[i]["frame"]) == kind(message)
            ),
            None,
        )
        if found is None:
            continue
        recorded_id = entries[found]["frame"].get("id")
        cursor = found + 1
        while cursor < len(entries) and entries[cursor]["dir"] == "in":
            frame = entries[cursor]["frame"]
            if "method" not in frame and frame.get("id") == recorded_id and "id" in message:
                frame = {**frame, "id": message["id"]}
            sys.stdout.write(json.dumps(frame) + "\n")
            cursor += 1
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
