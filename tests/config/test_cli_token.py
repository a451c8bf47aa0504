"""acpd's own clients find the local daemon's token by themselves, and never send it elsewhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from acpd.cli import _client, build_parser, main
from acpd.client import Acpd
from acpd.config import DaemonConfig
from acpd.daemon.acp_stdio import relay_token
from acpd.private import ensure_token

LOCAL = "http://127.0.0.1:4520"
REMOTE = "http://build-box.example:4520"


@pytest.fixture
def local_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The token a local daemon generated in the default data directory of an isolated home."""
    for name in ("ACPD_TOKEN", "ACPD_TOKEN_FILE", "ACPD_DATA_DIR", "ACPD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return ensure_token(tmp_path / "data" / "acpd")


def cli_client(*words: str) -> Acpd:
    return _client(build_parser().parse_args(["sessions", "list", *words]))


def test_cli_commands_send_the_local_daemons_token_without_being_told(local_token: str) -> None:
    assert cli_client().token == local_token
    assert cli_client("--url", "http://localhost:9999").token == local_token


def test_cli_commands_never_send_the_local_token_to_another_machine(local_token: str) -> None:
    assert cli_client("--url", REMOTE).token is None


def test_acpd_token_in_the_environment_or_a_token_file_wins(
    local_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "given"
    given.write_text("from-a-file\n")
    assert cli_client("--token-file", str(given)).token == "from-a-file"
    monkeypatch.setenv("ACPD_TOKEN", "from-env")
    assert cli_client("--url", REMOTE).token == "from-env"


def test_the_python_client_finds_the_local_token_too(local_token: str, tmp_path: Path) -> None:
    assert Acpd(LOCAL).token == local_token
    assert Acpd(REMOTE).token is None
    assert Acpd(LOCAL, token="").token is None


def test_acpd_acp_relays_with_the_data_dirs_token_to_a_local_daemon_only(tmp_path: Path) -> None:
    token = ensure_token(tmp_path)
    config = DaemonConfig(data_dir=str(tmp_path))
    assert relay_token(config, LOCAL) == token
    assert relay_token(config, REMOTE) is None
    assert relay_token(dataclasses.replace(config, token="configured"), REMOTE) == "configured"


def test_acpd_token_prints_the_token_for_curl(local_token: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"{local_token}\n"
