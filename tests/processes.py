"""Waiting for processes the test does not parent, without polling: pidfds turn readable at exit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import anyio


@contextmanager
def pidfds(pids: list[int]) -> Iterator[list[int]]:
    """Handles on live processes that stay valid (and unambiguous) after the processes end."""
    fds = [os.pidfd_open(pid) for pid in pids]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


async def wait_all_ended(fds: list[int]) -> None:
    with anyio.fail_after(5):
        for fd in fds:
            await anyio.wait_readable(fd)  # a pidfd turns readable when its process has ended
