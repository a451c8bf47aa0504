"""Store layer: the single-owner lock of a database file, so two daemons never share one log.

One process owns a SQLite file at a time: it holds ``flock`` on ``<db>.lock`` (mode 0600) for the
store's life, and the kernel lets go when the process dies, even by ``kill -9``, so a crash never
leaves a stale lock. The file stays behind on purpose (removing a lock file races with the next
owner). Its text tells a refused process who the owner is: ``{"pid": N, "url": "…"}``.

It must not import anything of acpd but errors, nor hold the descriptor across ``exec`` (an agent
the daemon started must not keep its database locked after the daemon is gone).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Any, Final

from acpd.errors import StoreLocked

LOCK_SUFFIX: Final = ".lock"
LOCK_MODE: Final = 0o600
MAX_OWNER_BYTES: Final = 4096


class OwnerLock:
    """A held lock on one database file; ``release`` (or the process's death) lets it go."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def describe(self, facts: dict[str, Any]) -> None:
        """Say who owns the database, for a refused process's message: our pid and ``facts``."""
        if self._fd is None:
            return
        text = json.dumps({"pid": os.getpid(), **facts}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        """Let the lock go; idempotent. Closing the descriptor is what releases a ``flock``."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def acquire_owner_lock(db_path: str) -> OwnerLock:
    """Take the database's lock, or refuse at once.

    Raises:
        StoreLocked: another process owns ``db_path``; ``data`` holds what it wrote (pid, url).
        OSError: the lock file cannot be created or opened.
    """
    path = db_path + LOCK_SUFFIX
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        raise StoreLocked(_refusal(db_path, owner), data={"db": db_path, **owner}) from None
    except BaseException:
        os.close(fd)
        raise
    lock = OwnerLock(fd)
    try:
        os.fchmod(fd, LOCK_MODE)  # a file left by an older acpd may be wider
        lock.describe({})
    except BaseException:
        lock.release()
        raise
    return lock


def _read_owner(fd: int) -> dict[str, Any]:
    # The owner may be writing its text right now: half a text reads as nothing known.
    with contextlib.suppress(OSError, ValueError):
        facts = json.loads(os.pread(fd, MAX_OWNER_BYTES, 0))
        if isinstance(facts, dict):
            return {k: v for k, v in facts.items() if k in ("pid", "url")}
    return {}


def _refusal(db_path: str, owner: dict[str, Any]) -> str:
    facts = [f"pid {owner['pid']}"] if "pid" in owner else []
    facts += [f"serving {owner['url']}"] if "url" in owner else []
    who = f"another acpd ({', '.join(facts)})" if facts else "another acpd"
    return f"{who} owns {db_path}; stop it or use --db"
