"""Builders of event records and session documents shared by the store tests, and a full disk."""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from acpd.protocol.events import EventRecord, Sender
from acpd.store import SessionDoc, SqliteEventStore

CREATED_AT: Final = "2026-01-02T03:04:05.000Z"
MAX_PAGES: Final = 0xFFFFFFFE


def record(session_id: str, seq: int, payload: str | None = None, *, sender: Sender = "agent") -> EventRecord:
    text = payload if payload is not None else f'{{"jsonrpc":"2.0","method":"session/update","params":{{"n":{seq}}}}}'
    return EventRecord(session_id, seq, "2026-01-02T03:04:05.678Z", sender, seq // 3 + 1, text)


def log(session_id: str, first: int, last: int) -> list[EventRecord]:
    return [record(session_id, seq) for seq in range(first, last + 1)]


def doc(session_id: str, created_at: str = CREATED_AT, **fields: Any) -> SessionDoc:
    base: SessionDoc = {
        "id": session_id,
        "agent": "mock",
        "cwd": "/srv/projects/alpha",
        "project": None,
        "createdAt": created_at,
        "archivedAt": None,
    }
    return {**base, **fields}


async def fill_up(store: SqliteEventStore) -> None:
    """A full disk, as SQLite sees one: the database may grow no page beyond those it has."""
    await store._write(_cap_pages)


async def make_room(store: SqliteEventStore) -> None:
    """Space returns."""
    await store._write(_uncap_pages)


def _cap_pages(conn: sqlite3.Connection) -> None:
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {pages}")


def _uncap_pages(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA max_page_count = {MAX_PAGES}")
