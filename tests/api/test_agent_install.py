"""``POST /v1/agents/{name}/install``: a preset installed by the daemon with its progress streamed as
SSE, with a stand-in npm on PATH (the installing itself is tested in tests/daemon)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from acpd.daemon.agent_install import INSTALLING
from acpd.daemon.app import create_app
from acpd.daemon.install import PROXY_VARIABLES
from acpd.daemon.manager import SessionManager
from acpd.presets import PRESETS
from tests.daemon.test_agents_facts import fake_npm, npm_script

from .conftest import BASE_URL, TOKEN

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A URL where something listens, standing in for a reachable registry (no proxy set)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


@pytest.fixture
async def app_client(manager: SessionManager) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(manager)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers, timeout=30) as http:
        yield app, http


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((fields["event"], json.loads(fields["data"])))
    return found


async def test_an_install_streams_its_progress_and_then_the_agent_is_available(
    app_client: tuple[Any, httpx.AsyncClient], registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, http = app_client
    program = PRESETS["gemini"].program
    fake_npm(
        tmp_path / "bin",
        npm_script(registry, f'mkdir -p "$(dirname {program})" && echo ok > {program} && chmod +x {program}\n'),
        monkeypatch,
    )

    response = await http.post("/v1/agents/gemini/install")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    streamed = events(response.text)
    assert {name for name, _ in streamed[:-1]} == {"progress"}
    assert streamed[-1][0] == "done"
    assert streamed[-1][1]["program"].endswith(program)
    assert streamed[-2][1]["bytesOnDisk"] > 0
    agents = {a["name"]: a for a in (await http.get("/v1/agents")).json()["items"]}
    assert agents["gemini"]["available"] is True


async def test_a_failed_install_ends_its_stream_with_the_problem_and_npms_output(
    app_client: tuple[Any, httpx.AsyncClient], registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, http = app_client
    fake_npm(tmp_path / "bin", npm_script(registry, "echo 'npm error code E404' >&2\nexit 1\n"), monkeypatch)

    response = await http.post("/v1/agents/gemini/install")

    name, problem = events(response.text)[-1]
    assert name == "error"
    assert problem["type"] == "urn:acpd:problem:install-failed"
    assert "E404" in problem["data"]["npmOutput"]


async def test_an_unknown_preset_or_one_being_installed_is_refused(app_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, http = app_client
    unknown = await http.post("/v1/agents/no-such-agent/install")
    app.state.__dict__.setdefault(INSTALLING, set()).add("codex")
    busy = await http.post("/v1/agents/codex/install")

    assert (unknown.status_code, unknown.json()["type"]) == (400, "urn:acpd:problem:agent-not-found")
    assert (busy.status_code, busy.json()["type"]) == (409, "urn:acpd:problem:conflict")
