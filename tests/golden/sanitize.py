"""Turn ``--record-agents`` recordings into golden raw files: one per agent, no machine paths.

``python -m tests.golden.sanitize RECORDINGS_DIR GOLDEN_DIR``. The directory a recorded session
ran in is found from its ``session/new`` and replaced, with its parent, by fixed placeholders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PLACEHOLDER_HOME = "/home/acpd-golden"


def sanitize(recording: Path) -> str:
    text = recording.read_text(encoding="utf-8")
    for line in text.splitlines():
        frame = json.loads(line)["frame"]
        if frame.get("method") == "session/new":
            home = str(Path(frame["params"]["cwd"]).parent)
            # JSON escapes no characters of a plain path, so a textual replace is exact.
            return text.replace(home, PLACEHOLDER_HOME)
    raise SystemExit(f"{recording}: no session/new in the recording")


def main(recordings: str, golden: str) -> None:
    for recording in sorted(Path(recordings).glob("*.jsonl")):
        agent = recording.name.split(".")[-2]
        target = Path(golden) / f"{agent}.raw.jsonl"
        target.write_text(sanitize(recording), encoding="utf-8")
        sys.stdout.write(f"golden: {target}\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
