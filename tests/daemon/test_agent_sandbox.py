"""An agent whose every command would fail for want of its sandbox is refused at session create."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig

from .test_agents_facts import fake_install

pytestmark = pytest.mark.anyio


@pytest.fixture
def installed() -> bool:
    return True


@pytest.fixture
def model_url() -> str | None:
    return "http://127.0.0.1:9"


@pytest.fixture
def config(tmp_path: Path, installed: bool, model_url: str | None) -> DaemonConfig:
    if installed:
        fake_install(tmp_path / "agents", "codex")
    bare = tmp_path / "bare-path"
    bare.mkdir()
    # no credentials but the model URL's: no login files in this home
    env = {"PATH": str(bare), "HOME": str(tmp_path), "CODEX_HOME": str(tmp_path)}
    return DaemonConfig(
        data_dir=str(tmp_path / "data"),
        db=":memory:",
        agents_dir=str(tmp_path / "agents"),
        model_url=model_url,
        agents={"codex": AgentConfig(env=env)},
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


@pytest.mark.parametrize("model_url", [None])
@pytest.mark.parametrize("installed", [True, False])
async def test_the_agent_list_and_a_session_create_and_a_switch_give_the_same_reasons_all_at_once(
    client: httpx.AsyncClient, tmp_path: Path, installed: bool
) -> None:
    """All at once and in the same order; a start is refused for every reason but credentials acpd
    cannot see (the agent may hold a login acpd cannot read, and says so itself)."""
    listed = {a["name"]: a for a in (await client.get("/v1/agents")).json()["items"]}["codex"]
    expected = ["bwrap not found on PATH", "no credentials"]
    assert [r.partition(":")[0] for r in listed["reasons"]] == (["not installed"] if not installed else []) + expected
    assert listed["reason"] == "; ".join(listed["reasons"])
    created = await client.post("/v1/sessions", json={"agent": "codex", "cwd": str(tmp_path)})
    assert created.status_code == 503, created.text
    refusing = [r for r in listed["reasons"] if not r.startswith("no credentials")]
    assert created.json()["detail"].endswith("; ".join(refusing))
    assert created.json()["data"]["reasons"] == refusing
    session = (await client.post("/v1/sessions", json={"agent": "mock", "cwd": str(tmp_path)})).json()
    switched = await client.patch(f"/v1/sessions/{session['id']}", json={"agent": "codex"})
    assert switched.status_code == 503, switched.text
    assert switched.json()["detail"] == created.json()["detail"]
