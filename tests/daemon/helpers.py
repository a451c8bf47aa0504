"""Small helpers for daemon tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx

from acpd.daemon.manager import SessionManager
from acpd.errors import StoreFull
from acpd.protocol.events import EventRecord
from acpd.store.base import SessionDoc
from acpd.store.docs import EncodedDoc
from acpd.store.memory import MemoryEventStore


async def new_session(client: httpx.AsyncClient, cwd: Path, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(cwd), **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def prompted(client: httpx.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    """A blocking prompt's answer (asserted 200), within 10 s."""
    with anyio.fail_after(10):
        response = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def all_events(client: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await client.get(f"/v1/sessions/{session_id}/events", params={"after": after, "limit": 1000})).json()
        events.extend(page["items"])
        if not page["hasMore"]:
            return events
        after = page["nextAfter"]


def updates(events: list[dict[str, Any]], kind: str | None = None) -> list[dict[str, Any]]:
    found = [e["payload"]["params"]["update"] for e in events if e["payload"].get("method") == "session/update"]
    return [u for u in found if kind is None or u.get("sessionUpdate") == kind]


def daemon_frames(events: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [e["payload"]["params"] for e in events if e["payload"].get("method") == method]


async def wait_for_frame(manager: SessionManager, session_id: str, method: str) -> EventRecord:
    """Follow the session's log (event-driven, no polling) until a frame with ``method`` is committed."""
    runtime = await manager.runtime(session_id)
    async for batch in runtime.log.follow(0):
        for record in batch:
            if record.payload_object().get("method") == method:
                return record
    raise AssertionError(f"the log closed before a {method} frame")


async def wait_for_record(manager: SessionManager, session_id: str, test: Callable[[EventRecord], bool]) -> EventRecord:
    """Follow the session's log until a committed record passes ``test``."""
    runtime = await manager.runtime(session_id)
    async for batch in runtime.log.follow(0):
        for record in batch:
            if test(record):
                return record
    raise AssertionError("the log closed before the record came")


class FullDisk(MemoryEventStore):
    """A store whose disk fills and empties on the test's word; each failed attempt is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.failures = 0
        self._failed = anyio.Event()

    async def append_many(
        self, records: Sequence[EventRecord], *, sessions: Sequence[SessionDoc | EncodedDoc] = ()
    ) -> None:
        if self.full:
            self.failures += 1
            self._failed.set()
            raise StoreFull("the event store is full (database or disk is full): free disk space")
        await super().append_many(records, sessions=sessions)

    async def wait_failures(self, count: int) -> None:
        while self.failures < count:
            self._failed = anyio.Event()
            await self._failed.wait()
