"""Daemon fixtures: a running SessionManager on a store, and an in-process HTTP client for its app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from acpd.config import DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:")


@pytest.fixture
async def manager(config: DaemonConfig) -> AsyncIterator[SessionManager]:
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as running:
        yield running
    await store.aclose()


@pytest.fixture
async def client(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4520", timeout=10) as http:
        yield http
