"""What a benchmark reads of processes from ``/proc``: their tree, resident memory and CPU time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int, tid: int | None = None) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` (of its thread ``tid``'s ``stat``, if given) after the
    command name (which may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat").read_bytes()
    return stat[stat.rfind(b")") + 2 :].split()


def _cpu_of(fields: list[bytes]) -> float:
    """utime + stime of a ``stat``'s fields, in seconds (10 ms ticks)."""
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_of() -> dict[int, list[int]]:
    """Every process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except OSError:
                continue  # it ended while we looked
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children, found, todo = children_of(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kib(pid: int) -> int:
    """``VmRSS`` of ``pid``; 0 once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in 10 ms ticks."""
    return _cpu_of(_stat_fields(pid))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime of each live thread of ``pid``, by thread id (the main thread's is ``pid``)."""
    found: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in map(int, tids):
        try:
            found[tid] = _cpu_of(_stat_fields(pid, tid))
        except OSError:
            continue  # it ended while we looked
    return found
