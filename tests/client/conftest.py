"""Client fixtures: an in-process daemon app behind an ``AsyncAcpd`` (no sockets), and a real
``acpd serve`` process for what needs a wire (streams, restarts, the command line)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from acpd.client import AsyncAcpd
from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore
from acpd.testing.daemon import Daemon, running_daemon

REQUEST_TIMEOUT_SECONDS = 30.0


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[SessionManager]:
    """A daemon's session manager on a memory store, with a second mock agent to switch to."""
    store = MemoryEventStore()
    second = AgentConfig(command=sys.executable, args=("-m", "acpd.testing.mock_agent", "--name", "mock-b"))
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"mock-b": second})
    async with SessionManager(config, store).running() as running:
        yield running
    await store.aclose()


@pytest.fixture
async def app_client(manager: SessionManager) -> AsyncIterator[AsyncAcpd]:
    """An async client of the daemon's app in this process (no token: the app has no security edge)."""
    transport = httpx.ASGITransport(app=create_app(manager))
    async with AsyncAcpd("http://127.0.0.1:4520", token="", timeout=REQUEST_TIMEOUT_SECONDS, transport=transport) as c:
        yield c


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path) as running:
        yield running


@pytest.fixture
async def live_client(daemon: Daemon) -> AsyncIterator[AsyncAcpd]:
    async with AsyncAcpd(daemon.url, daemon.token, timeout=REQUEST_TIMEOUT_SECONDS) as c:
        yield c
