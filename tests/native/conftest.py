"""claude-native's test fixtures: acpd's mock model server, and an in-process daemon whose
claude-native agent talks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore
from acpd.testing.model_server import MockModelServer, serve_mock_model


def native_config(model: MockModelServer, tmp_path: Path) -> DaemonConfig:
    native = AgentConfig(kind="claude-native", model_url=model.url)
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"claude-native": native})


@asynccontextmanager
async def client_of(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4520", timeout=30) as client:
        yield client


@pytest.fixture
async def model() -> AsyncIterator[MockModelServer]:
    async with serve_mock_model() as server:
        yield server


@pytest.fixture
async def store() -> AsyncIterator[MemoryEventStore]:
    store = MemoryEventStore()
    yield store
    await store.aclose()


@pytest.fixture
async def manager(model: MockModelServer, tmp_path: Path, store: MemoryEventStore) -> AsyncIterator[SessionManager]:
    async with SessionManager(native_config(model, tmp_path), store).running() as running:
        yield running
