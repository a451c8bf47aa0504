"""Invalid agent output is coalesced, and a flood of it is told apart, by the clock."""

from __future__ import annotations

from acpd.adapters.floods import (
    FLOOD_WINDOW_SECONDS,
    MAX_INVALID_BYTES,
    MAX_INVALID_FRAMES,
    SUMMARY_SECONDS,
    Batch,
    InvalidFrames,
    Verdict,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_invalid_frame_is_recorded_and_the_next_ones_are_held_for_one_summary() -> None:
    clock = Clock()
    frames = InvalidFrames(clock)
    assert frames.add(10, "first", "not JSON") is Verdict.RECORD
    assert [frames.add(5, f"more {i}", "not JSON") for i in range(3)] == [Verdict.HOLD] * 3
    assert frames.summary_due == 100.0 + SUMMARY_SECONDS
    clock.now += SUMMARY_SECONDS
    assert frames.take_summary() == Batch(count=3, bytes=15, excerpt="more 0", reason="not JSON")
    assert frames.take_summary() is None
    assert frames.add(1, "later", "not JSON") is Verdict.HOLD  # within a second of the summary
    clock.now += SUMMARY_SECONDS
    frames.take_summary()
    clock.now += SUMMARY_SECONDS
    assert frames.add(1, "after a quiet second", "not JSON") is Verdict.RECORD


def test_more_invalid_frames_than_the_limit_within_the_window_is_a_flood() -> None:
    clock = Clock()
    frames = InvalidFrames(clock)
    verdicts = [frames.add(1, "x", "not JSON") for _ in range(MAX_INVALID_FRAMES)]
    assert Verdict.FLOOD not in verdicts
    assert frames.add(1, "x", "not JSON") is Verdict.FLOOD
    assert frames.window.count == MAX_INVALID_FRAMES + 1


def test_the_same_number_spread_over_windows_is_no_flood() -> None:
    clock = Clock()
    frames = InvalidFrames(clock)
    for _ in range(3):
        assert Verdict.FLOOD not in {frames.add(1, "x", "not JSON") for _ in range(MAX_INVALID_FRAMES)}
        clock.now += FLOOD_WINDOW_SECONDS


def test_invalid_bytes_over_the_limit_within_the_window_are_a_flood() -> None:
    frames = InvalidFrames(Clock())
    assert frames.add(MAX_INVALID_BYTES // 2, "<big>", "too long") is Verdict.RECORD
    assert frames.add(MAX_INVALID_BYTES // 2, "<big>", "too long") is Verdict.HOLD
    assert frames.add(1, "x", "not JSON") is Verdict.FLOOD
