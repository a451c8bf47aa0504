"""Waiting for processes the test does not parent, without polling: pidfds turn readable at exit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import anyio


@contextmanager
def pidfds(pids: list[int], *, missing_ok: bool = False) -> Iterator[list[int]]:
    """Handles on live processes that stay valid (and unambiguous) after the processes end.

    ``missing_ok``: a process that has already ended gets no handle (a list taken from /proc may
    name short-lived ones), instead of raising ``ProcessLookupError``.
    """
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            if not missing_ok:
                for fd in fds:
                    os.close(fd)
                raise
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


async def wait_all_ended(fds: list[int]) -> None:
    with anyio.fail_after(5):
        for fd in fds:
            await anyio.wait_readable(fd)  # a pidfd turns readable when its process has ended


def cmdlines() -> list[tuple[int, str]]:
    """Every process's pid and command line (arguments joined by spaces), from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    found.append((int(name), f.read().replace(b"\0", b" ").decode(errors="replace")))
            except OSError:
                continue  # it ended while we looked
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, …), from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue  # it ended while we looked
            # the command name may hold spaces and parentheses: the fields start after the last ")"
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found.extend(below)
        todo.extend(below)
    return found
