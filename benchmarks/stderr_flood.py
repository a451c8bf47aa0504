"""Benchmark: the daemon's CPU while an agent floods its stderr as fast as it can write.

Run: ``.venv/bin/python benchmarks/stderr_flood.py [--seconds S]``. The agent writes 1 MiB blocks
to stderr in a loop; the ProcessTransport drains it (keeping only the tail). Prints this process's
CPU use as a share of one core, and how fast stderr was read.
"""

from __future__ import annotations

import argparse
import sys
import time

import anyio

from acpd.transports.process import ProcessSpec, open_process_transport

WRITER = "import os\nblock = b'x' * (1 << 20)\nwhile True:\n    os.write(2, block)\n"


async def measure(seconds: float) -> tuple[float, float]:
    """(share of a core used, bytes read per second) while the agent floods stderr."""
    read = 0

    def count(chunk: bytes) -> None:
        nonlocal read
        read += len(chunk)

    async with open_process_transport(ProcessSpec(sys.executable, ("-c", WRITER)), on_stderr=count):
        cpu, wall = time.process_time(), time.monotonic()
        await anyio.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return cpu / wall, read / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    share, rate = anyio.run(measure, args.seconds)
    print(f"daemon CPU {share:.1%} of a core; stderr read at {rate / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main()
