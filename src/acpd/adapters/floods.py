"""Adapters layer: what an agent's invalid output costs the daemon, bounded. Pure: no I/O, no tasks.

An agent that writes a line of garbage to its stdout now and then is recorded; one that writes
millions must cost neither millions of events nor the daemon's memory. ``InvalidFrames`` counts
invalid frames and decides, frame by frame: record this one now, hold it for the next summary,
or stop the agent. The adapter records what it is told and owns the timer that flushes summaries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

SUMMARY_SECONDS: Final = 1.0
"""After an invalid frame is recorded, the next ones are counted and summarized at most this often."""
FLOOD_WINDOW_SECONDS: Final = 10.0
MAX_INVALID_FRAMES: Final = 1000
"""Invalid frames an agent may write within ``FLOOD_WINDOW_SECONDS`` before it is stopped."""
MAX_UNSOLICITED_FRAMES: Final = 1000
"""Messages an agent may send outside a turn (when nobody asked it anything) within the window."""
MAX_INVALID_BYTES: Final = 64 * 1024 * 1024
"""Bytes of invalid frames (too-long lines count their full size) within the window before it is stopped:
two lines over the 32 MiB line limit pass, a stream of them does not."""


class Verdict(Enum):
    RECORD = "record"
    """The first invalid frame in a while: record it at once."""
    HOLD = "hold"
    """Counted into the summary that ``take_summary`` will give."""
    FLOOD = "flood"
    """Over the limits: stop the agent (``flood`` says how much it wrote)."""


@dataclass(slots=True)
class Batch:
    """Invalid frames counted together: how many, their bytes, and the first one's excerpt."""

    count: int = 0
    bytes: int = 0
    excerpt: str = ""
    reason: str = ""

    def add(self, size: int, excerpt: str, reason: str) -> None:
        if self.count == 0:
            self.excerpt, self.reason = excerpt, reason
        self.count += 1
        self.bytes += size


class InvalidFrames:
    """The invalid frames one agent wrote: what to record, and when it is a flood."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._quiet_until = -float("inf")  # before this time, frames are held for a summary
        self._held = Batch()
        self._window_start = -float("inf")
        self.window = Batch()
        """The frames of the current flood window (after ``FLOOD``: the ones that made it a flood)."""

    def add(self, size: int, excerpt: str, reason: str) -> Verdict:
        now = self._clock()
        if now - self._window_start >= FLOOD_WINDOW_SECONDS:
            self._window_start, self.window = now, Batch()
        self.window.add(size, excerpt, reason)
        if self.window.count > MAX_INVALID_FRAMES or self.window.bytes > MAX_INVALID_BYTES:
            return Verdict.FLOOD
        if now >= self._quiet_until:
            self._quiet_until = now + SUMMARY_SECONDS
            return Verdict.RECORD
        self._held.add(size, excerpt, reason)
        return Verdict.HOLD

    @property
    def summary_due(self) -> float | None:
        """When the held frames should be summarized (clock time), or ``None`` if none are held."""
        return self._quiet_until if self._held.count else None

    def take_summary(self) -> Batch | None:
        """The frames held since the last record, to record as one summary; then hold anew."""
        if not self._held.count:
            return None
        held, self._held = self._held, Batch()
        self._quiet_until = self._clock() + SUMMARY_SECONDS
        return held


class FrameRate:
    """Counts frames in windows of ``FLOOD_WINDOW_SECONDS``: ``add`` says when one is too many."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._window_start = -float("inf")
        self.count = 0

    def add(self) -> bool:
        """Count one frame; True when the window now holds more than the limit."""
        now = self._clock()
        if now - self._window_start >= FLOOD_WINDOW_SECONDS:
            self._window_start, self.count = now, 0
        self.count += 1
        return self.count > self._limit
