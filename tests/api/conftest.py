"""API fixtures: an in-process daemon app, with a bearer token as a user's daemon has one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from acpd.config import DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore

TOKEN = "test-token"
BASE_URL = "http://127.0.0.1:4520"


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", token=TOKEN)


@pytest.fixture
async def manager(config: DaemonConfig) -> AsyncIterator[SessionManager]:
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as running:
        yield running
    await store.aclose()


@pytest.fixture
async def anonymous(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app that sends no token (a browser opening a page)."""
    transport = httpx.ASGITransport(app=create_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=10) as http:
        yield http


@pytest.fixture
async def client(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app that sends the token."""
    transport = httpx.ASGITransport(app=create_app(manager))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers, timeout=10) as http:
        yield http
