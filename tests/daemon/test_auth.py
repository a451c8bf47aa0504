"""A token on every bind by default (DESIGN §7): the token file, the opt-out, and CORS around the
security edge so that a browser page can use a daemon that wants a token."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from acpd.config import DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.daemon.security import describe_auth, secured
from acpd.errors import ConfigError
from acpd.private import ensure_token, token_path

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-value"
PAGE = "http://127.0.0.1:4520"
"""An allowed origin: a page served by the daemon's own address."""


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", token=TOKEN)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_a_first_start_creates_a_private_token_file_and_later_starts_reuse_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = secured(DaemonConfig(data_dir=str(data_dir)))
    again = secured(DaemonConfig(data_dir=str(data_dir)))
    assert first.token is not None and len(first.token) >= 32
    assert again.token == first.token == token_path(data_dir).read_text().strip()
    assert mode(token_path(data_dir)) == 0o600
    assert mode(data_dir) == 0o700
    assert [p.name for p in data_dir.iterdir()] == ["token"]  # no temporary file left behind


def test_the_start_up_line_says_where_the_token_came_from(tmp_path: Path) -> None:
    given = tmp_path / "given-token"
    given.write_text("from-a-file\n")
    data_dir = tmp_path / "data"
    generated = describe_auth(secured(DaemonConfig(data_dir=str(data_dir))))
    assert generated == f"token in {token_path(data_dir)}"
    assert describe_auth(secured(DaemonConfig(data_dir=str(data_dir), token_file=str(given)))) == f"token in {given}"
    from_env = describe_auth(secured(DaemonConfig(data_dir=str(data_dir), token="from-env")))
    assert from_env == "token from ACPD_TOKEN or the config file"
    assert describe_auth(secured(DaemonConfig(data_dir=str(data_dir), auth=False))) == "no token (--no-auth)"


@pytest.mark.usefixtures("open_umask")
def test_a_readable_data_dir_and_token_file_left_by_an_older_version_become_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    token_path(data_dir).write_text("old-token\n")
    token_path(data_dir).chmod(0o644)
    assert ensure_token(data_dir) == "old-token"
    assert (mode(data_dir), mode(token_path(data_dir))) == (0o700, 0o600)


def test_a_token_from_the_environment_or_a_token_file_wins_over_the_generated_one(tmp_path: Path) -> None:
    given = tmp_path / "given-token"
    given.write_text("from-a-file\n")
    assert secured(DaemonConfig(data_dir=str(tmp_path), token="from-env")).token == "from-env"
    assert secured(DaemonConfig(data_dir=str(tmp_path), token_file=str(given))).token == "from-a-file"
    assert not token_path(tmp_path).exists()
    with pytest.raises(ConfigError, match="missing or empty"):
        secured(DaemonConfig(data_dir=str(tmp_path), token_file=str(tmp_path / "nope")))


@pytest.mark.usefixtures("open_umask")
def test_missing_parents_of_the_data_directory_are_made_private_too(tmp_path: Path) -> None:
    data_dir = tmp_path / "xdg" / "share" / "acpd"
    secured(DaemonConfig(data_dir=str(data_dir)))
    assert [mode(d) for d in (tmp_path / "xdg", tmp_path / "xdg" / "share", data_dir)] == [0o700] * 3


@pytest.mark.usefixtures("open_umask")
def test_no_auth_serves_without_a_token_on_loopback_and_still_keeps_the_data_dir_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = secured(DaemonConfig(data_dir=str(data_dir), auth=False))
    assert config.token is None
    assert not token_path(data_dir).exists()
    assert mode(data_dir) == 0o700


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_no_auth_is_refused_off_loopback(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        secured(DaemonConfig(data_dir=str(tmp_path), host=host, auth=False))


def test_no_auth_together_with_a_token_is_refused_rather_than_guessed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a token was given"):
        secured(DaemonConfig(data_dir=str(tmp_path), token="t", auth=False))


async def test_a_preflight_is_answered_without_a_token(client: httpx.AsyncClient) -> None:
    headers = {
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = await client.options("/v1/sessions", headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    ("origin", "method"), [(PAGE, "PUT"), ("http://evil.example", "POST")], ids=["method", "origin"]
)
async def test_a_refused_preflight_is_a_problem(client: httpx.AsyncClient, origin: str, method: str) -> None:
    response = await client.options("/v1/sessions", headers={"Origin": origin, "Access-Control-Request-Method": method})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:acpd:problem:cors-refused"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/sessions", {}, 401),
        ("/v1/acp/conn-1", {}, 401),
        ("/v1/sessions", {"Authorization": f"Bearer {TOKEN}", "Content-Length": str(64 * 1024 * 1024)}, 413),
    ],
)
async def test_a_refusal_to_an_allowed_origin_carries_the_cors_headers(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int
) -> None:
    response = await client.post(path, headers={"Origin": PAGE, **headers}, content=b"{}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["access-control-allow-origin"] == PAGE


async def test_an_origin_that_is_not_allowed_gets_no_cors_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sessions", headers={"Origin": "http://evil.example", "Authorization": "x"})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


async def test_an_internal_error_answered_to_an_allowed_origin_carries_the_cors_headers(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**query: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(manager, "list_sessions", broken)
    transport = httpx.ASGITransport(app=create_app(manager), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=PAGE) as http:
        response = await http.get("/v1/sessions", headers={"Origin": PAGE, "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == PAGE
