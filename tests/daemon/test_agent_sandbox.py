"""An agent whose every command would fail for want of its sandbox is refused at session create."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig

from .test_agents_facts import fake_install

pytestmark = pytest.mark.anyio


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    fake_install(tmp_path / "agents", "codex")
    bare = tmp_path / "bare-path"
    bare.mkdir()
    return DaemonConfig(
        data_dir=str(tmp_path / "data"),
        db=":memory:",
        agents_dir=str(tmp_path / "agents"),
        model_url="http://127.0.0.1:9",
        agents={"codex": AgentConfig(env={"PATH": str(bare)})},
    )


async def test_a_session_with_codex_and_no_bubblewrap_is_refused_with_the_reason_and_the_fix(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await client.post("/v1/sessions", json={"agent": "codex", "cwd": str(tmp_path)})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("agent-unavailable")
    assert "bwrap not found on PATH: install bubblewrap (Debian: apt install bubblewrap)" in problem["detail"]
