"""Presets as configuration: what each starts, with which switches, and how a model URL routes it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from acpd.adapters.homes import prepare_home
from acpd.cli import load_config
from acpd.config import AgentConfig, DaemonConfig
from acpd.presets import PLACEHOLDER_KEY, PRESETS, preset_program


def install_fake(agents_dir: Path, name: str) -> Path:
    program = preset_program(PRESETS[name], agents_dir)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


def test_every_preset_is_an_agent_and_uninstalled_ones_are_looked_up_on_path(tmp_path: Path) -> None:
    agents = DaemonConfig(agents_dir=str(tmp_path)).all_agents()
    assert set(PRESETS) | {"mock", "claude-native"} == set(agents)
    assert agents["gemini"].command == "gemini"
    assert agents["gemini"].args == ("--acp",)
    assert not agents["gemini"].installed


def test_an_installed_preset_starts_its_own_program(tmp_path: Path) -> None:
    program = install_fake(tmp_path, "codex")
    codex = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["codex"]
    assert codex.command == str(program)
    assert codex.installed
    # The switches that keep Codex off the network are always there.
    assert codex.args[:2] == ("-c", "analytics.enabled=false")
    assert "features.plugins=false" in codex.args


def test_claude_runs_the_installed_native_cli_and_keeps_off_nonessential_traffic(tmp_path: Path) -> None:
    install_fake(tmp_path, "claude")
    claude = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["claude"]
    assert claude.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert claude.env["CLAUDE_CODE_EXECUTABLE"].startswith(str(tmp_path / "claude" / "node_modules"))


def test_a_model_url_routes_each_preset_to_it_with_a_placeholder_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    agents = DaemonConfig(agents_dir=str(tmp_path), model_url="http://127.0.0.1:9/").all_agents()
    assert agents["claude"].env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    assert agents["claude"].env["ANTHROPIC_API_KEY"] == PLACEHOLDER_KEY
    assert 'model_providers.acpd.base_url="http://127.0.0.1:9/v1"' in agents["codex"].args
    assert agents["gemini"].env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:9"
    gemini = agents["gemini"]
    assert gemini.home is not None
    assert gemini.home.settings["security"] == {"auth": {"selectedType": "gemini-api-key"}}
    opencode = json.loads(agents["opencode"].env["OPENCODE_CONFIG_CONTENT"])
    assert opencode["provider"]["anthropic"]["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert opencode["autoupdate"] is False


def test_a_users_own_key_is_kept_when_routing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-user-key")
    claude = DaemonConfig(agents_dir=str(tmp_path), model_url="http://127.0.0.1:9").all_agents()["claude"]
    assert "ANTHROPIC_API_KEY" not in claude.env  # inherited from the daemon's environment as it is


def test_gemini_gets_a_home_of_its_own_whose_settings_keep_it_off_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("GEMINI_CLI_HOME", raising=False)
    gemini = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["gemini"]
    assert gemini.home is not None
    assert gemini.env["GEMINI_CLI_HOME"] == gemini.home.path == str(tmp_path / "gemini" / "home")
    assert gemini.home.user_home == str(tmp_path / "user")
    assert gemini.home.settings["privacy"] == {"usageStatisticsEnabled": False}
    assert "security" not in gemini.home.settings  # the user's own auth method, unless routed
    assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in gemini.env  # gemini ignores it outside root-owned dirs


def test_gemini_merges_the_home_the_user_set_and_keeps_one_set_for_it_in_its_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_CLI_HOME", str(tmp_path / "elsewhere"))
    gemini = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["gemini"]
    assert gemini.home is not None and gemini.home.user_home == str(tmp_path / "elsewhere")
    chosen = AgentConfig(env={"GEMINI_CLI_HOME": str(tmp_path / "mine")})
    gemini = DaemonConfig(agents_dir=str(tmp_path), agents={"gemini": chosen}).all_agents()["gemini"]
    assert gemini.home is None
    assert gemini.env["GEMINI_CLI_HOME"] == str(tmp_path / "mine")


def test_opencode_gets_a_config_home_of_its_own_with_the_users_config_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    opencode = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["opencode"]
    assert opencode.home is not None
    assert opencode.env["XDG_CONFIG_HOME"] == opencode.home.path == str(tmp_path / "opencode" / "xdg")
    assert opencode.home.user_home == str(tmp_path / "user" / ".config")
    assert opencode.home.link_home  # git and the rest of what opencode runs still find their config
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
    opencode = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["opencode"]
    assert opencode.home is not None and opencode.home.user_home == str(tmp_path / "elsewhere")
    chosen = AgentConfig(env={"XDG_CONFIG_HOME": str(tmp_path / "mine")})
    opencode = DaemonConfig(agents_dir=str(tmp_path), agents={"opencode": chosen}).all_agents()["opencode"]
    assert opencode.home is None
    assert opencode.env["XDG_CONFIG_HOME"] == str(tmp_path / "mine")


def opencode_installs_its_plugin_into(directory: Path) -> bool:
    """opencode 1.18's rule (its Npm.install) for each config directory it can write to: install
    @opencode-ai/plugin from the registry unless node_modules exists and the lock file's root
    package lists every dependency of package.json and the plugin."""
    if not (directory / "node_modules").is_dir():
        return True
    wanted = {"@opencode-ai/plugin"}
    if (directory / "package.json").is_file():
        wanted |= set(json.loads((directory / "package.json").read_text()).get("dependencies", {}))
    try:
        lock = json.loads((directory / "package-lock.json").read_text())
    except FileNotFoundError:
        return True
    return not wanted <= set(lock["packages"][""]["dependencies"])


def test_opencodes_config_home_keeps_it_from_installing_its_plugin_even_when_the_users_would_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = tmp_path / "user" / ".config" / "opencode"
    theirs.mkdir(parents=True)
    (theirs / "package.json").write_text('{"dependencies": {"left-pad": "1.3.0"}}')
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert opencode_installs_its_plugin_into(theirs)
    opencode = DaemonConfig(agents_dir=str(tmp_path / "agents")).all_agents()["opencode"]
    prepare_home(opencode.home)
    assert not opencode_installs_its_plugin_into(Path(opencode.env["XDG_CONFIG_HOME"]) / "opencode")
    assert sorted(path.name for path in theirs.iterdir()) == ["package.json"]


def test_a_configured_agent_named_after_a_preset_extends_it(tmp_path: Path) -> None:
    config = DaemonConfig(
        agents_dir=str(tmp_path),
        agents={"codex": AgentConfig(args=("-c", "sandbox_mode=1"), env={"X": "1"})},
    )
    codex = config.all_agents()["codex"]
    assert codex.args[-2:] == ("-c", "sandbox_mode=1")
    assert "analytics.enabled=false" in codex.args
    assert codex.env["X"] == "1"


def test_a_configured_agent_may_start_from_a_preset_under_another_name(tmp_path: Path) -> None:
    config = DaemonConfig(agents_dir=str(tmp_path), agents={"fast": AgentConfig(preset="opencode", args=("-x",))})
    fast = config.all_agents()["fast"]
    assert fast.command == "opencode"
    assert fast.args == ("acp", "--pure", "-x")


def test_an_agent_without_command_or_preset_is_rejected() -> None:
    with pytest.raises(ValueError, match="'custom' needs a command, or a preset"):
        DaemonConfig(agents={"custom": AgentConfig(args=("x",))}).validated()
    with pytest.raises(ValueError, match="unknown preset"):
        AgentConfig(preset="nope")


def test_agents_that_ignore_the_end_of_stdin_are_stopped_without_waiting_for_it(tmp_path: Path) -> None:
    agents = DaemonConfig(agents_dir=str(tmp_path)).all_agents()
    assert not agents["claude"].exits_on_stdin_close
    assert not agents["codex"].exits_on_stdin_close
    assert agents["gemini"].exits_on_stdin_close
    assert agents["mock"].exits_on_stdin_close


def test_routing_opencode_keeps_the_users_inline_config_but_not_a_model_the_url_cannot_serve(tmp_path: Path) -> None:
    mine = {"provider": {"openai": {"options": {"x": 1}}}, "model": "openai/gpt-5", "theme": "dark"}
    config = DaemonConfig(
        agents_dir=str(tmp_path),
        model_url="http://127.0.0.1:9",
        agents={"opencode": AgentConfig(env={"OPENCODE_CONFIG_CONTENT": json.dumps(mine)})},
    )
    inline = json.loads(config.all_agents()["opencode"].env["OPENCODE_CONFIG_CONTENT"])
    assert inline["theme"] == "dark"
    assert inline["provider"]["openai"] == {"options": {"x": 1}}
    assert inline["provider"]["anthropic"]["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert inline["model"].startswith("anthropic/")
    assert inline["share"] == "disabled"


def test_an_agents_own_env_overrides_a_preset_variable(tmp_path: Path) -> None:
    config = DaemonConfig(
        agents_dir=str(tmp_path), agents={"gemini": AgentConfig(env={"GEMINI_TELEMETRY_ENABLED": "x"})}
    )
    assert config.all_agents()["gemini"].env["GEMINI_TELEMETRY_ENABLED"] == "x"


def test_only_agents_that_leave_cancelled_commands_running_get_them_stopped(tmp_path: Path) -> None:
    agents = DaemonConfig(agents_dir=str(tmp_path)).all_agents()
    assert agents["codex"].stop_detached_on_cancel
    assert not agents["claude"].stop_detached_on_cancel  # it detaches background servers on purpose


def test_gemini_is_offered_file_writes_and_terminals_but_reads_files_itself(tmp_path: Path) -> None:
    gemini = DaemonConfig(agents_dir=str(tmp_path)).all_agents()["gemini"]
    assert gemini.client_capabilities.to_wire() == {
        "fs": {"readTextFile": False, "writeTextFile": True},
        "terminal": True,
    }
    for name in ("claude", "codex", "opencode"):
        offered = DaemonConfig(agents_dir=str(tmp_path)).all_agents()[name].client_capabilities.to_wire()
        assert offered == {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}, name


def test_client_capabilities_set_in_the_toml_override_only_what_they_say(tmp_path: Path) -> None:
    toml = tmp_path / "acpd.toml"
    toml.write_text(
        "[agents.gemini]\nclientCapabilities = { fs = { writeTextFile = false }, terminal = false }\n"
        "[agents.mine]\ncommand = 'mine'\nclientCapabilities = { fs = { readTextFile = false } }\n"
    )
    agents = load_config(argparse.Namespace(config=str(toml), agents_dir=str(tmp_path)), {}).all_agents()
    assert agents["gemini"].client_capabilities.to_wire() == {
        "fs": {"readTextFile": False, "writeTextFile": False},
        "terminal": False,
    }
    assert agents["mine"].client_capabilities.to_wire() == {
        "fs": {"readTextFile": False, "writeTextFile": True},
        "terminal": True,
    }
