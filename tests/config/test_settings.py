"""The daemon's settings: bounds checked with a message naming the field, whether they come from
flags, the environment or a config file; a config file's values checked for type and unknown keys;
the default session policy when none is configured."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from acpd.cli import load_config, main
from acpd.config import Policy
from acpd.errors import ConfigError
from acpd.settings import AGENT_START_TIMEOUT_SECONDS, DaemonConfig


@pytest.fixture(autouse=True)
def no_users_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACPD_CONFIG", "ACPD_DB", "ACPD_TOKEN", "ACPD_TOKEN_FILE", "ACPD_DATA_DIR", "ACPD_MODEL_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def test_the_defaults_are_valid() -> None:
    config = DaemonConfig().validated()
    assert (config.port, config.agent_start_timeout_seconds) == (4520, AGENT_START_TIMEOUT_SECONDS)


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"agent_start_timeout_seconds": 0}, "agent_start_timeout_seconds: must be greater than 0 (got 0)"),
        ({"acp_http_idle_seconds": -1.5}, "acp_http_idle_seconds: must be greater than 0 (got -1.5)"),
        ({"max_body_bytes": 0}, "max_body_bytes: must be greater than 0 (got 0)"),
        ({"port": 65536}, "port: must be at most 65535 (got 65536)"),
        ({"port": -1}, "port: must be at least 0 (got -1)"),
    ],
)
def test_a_setting_out_of_bounds_is_refused_naming_it(setting: dict[str, float], said: str) -> None:
    with pytest.raises(ValueError) as refused:
        DaemonConfig(**setting).validated()  # type: ignore[arg-type]
    assert str(refused.value) == said


def test_a_flag_out_of_bounds_is_refused_naming_it_without_a_config_file() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(argparse.Namespace(port=70000), {})
    assert str(refused.value) == "invalid configuration: port: must be at most 65535 (got 70000)"


def test_config_file_values_are_checked_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[daemon]\nport = "4600"\nallowed_origins = ["http://localhost:3000"]\n')
    config = load_config(argparse.Namespace(config=str(path)), {})
    assert config.port == 4600
    assert config.allowed_origins == ("http://localhost:3000",)


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[daemon]\nprot = 4520\n", "[daemon] prot: unknown key"),
        ("[daemon]\nacp_http_idle_seconds = 0\n", "acp_http_idle_seconds: "),
        ("[daemon]\nport = 70000\n", "[daemon] port: "),
    ],
)
def test_an_unknown_or_out_of_bounds_key_in_a_config_file_is_one_line_naming_it(
    toml: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(SystemExit) as exited:
        main(["agents", "list", "--config", str(path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    if "prot" not in toml:
        assert f"(got {toml.split('= ')[1].strip()})" in err


def test_sessions_get_the_default_policy_unless_one_is_configured(tmp_path: Path) -> None:
    assert DaemonConfig().session_policy() == Policy()
    path = tmp_path / "config.toml"
    path.write_text("[policy]\npermissions = 'deny'\nmaxSteps = 3\n")
    configured = load_config(argparse.Namespace(config=str(path)), {}).session_policy()
    assert (configured.permissions, configured.max_steps) == ("deny", 3)
