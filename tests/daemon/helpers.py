"""Small helpers for daemon tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from acpd.daemon.manager import SessionManager
from acpd.protocol.events import EventRecord


async def new_session(client: httpx.AsyncClient, cwd: Path, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(cwd), **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


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
