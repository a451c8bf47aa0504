"""What the daemon reports about its agents (GET /v1/agents, ``acpd agents list``) and installing presets."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.agents import all_agent_facts
from acpd.daemon.install import PROXY_VARIABLES, Progress, install_preset, preset_named
from acpd.errors import InstallFailed
from acpd.presets import PRESETS, preset_program

pytestmark = pytest.mark.anyio

NO_KEYS = {"PATH": os.environ["PATH"], "HOME": "/nonexistent-home"}


def fake_install(agents_dir: Path, name: str, version: str = "9.9.9") -> None:
    preset = PRESETS[name]
    program = preset_program(preset, agents_dir)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    package = preset.packages[0].rpartition("@")[0]
    (program.parent.parent / "package.json").write_text(json.dumps({"name": package, "version": version}))


def facts_by_name(config: DaemonConfig, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {facts["name"]: facts for facts in all_agent_facts(config, env)}


def test_an_installed_preset_reports_its_version_source_and_credentials(tmp_path: Path) -> None:
    fake_install(tmp_path, "codex", "0.16.0")
    fake_install(tmp_path, "claude", "0.23.1")
    env = {**NO_KEYS, "ANTHROPIC_API_KEY": "sk-x"}
    facts = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), env)
    assert (facts["codex"]["version"], facts["codex"]["source"]) == ("0.16.0", "acpd")
    claude = facts["claude"]
    assert claude["credentials"] == {"present": True, "source": "$ANTHROPIC_API_KEY"}
    assert claude["usable"] is True
    assert claude["reason"] is None


def test_codex_does_not_count_an_api_key_variable_it_ignores(tmp_path: Path) -> None:
    fake_install(tmp_path, "codex")
    codex = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), {**NO_KEYS, "OPENAI_API_KEY": "sk-x"})["codex"]
    assert codex["credentials"]["present"] is False
    assert "log in with the agent's own CLI" in str(codex["reason"])


def test_a_preset_not_installed_says_how_to_install_it(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    gemini = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), env)["gemini"]
    assert gemini["available"] is False
    assert "acpd agents install gemini" in str(gemini["reason"])


def test_missing_credentials_make_an_installed_preset_unusable_and_say_which_to_set(tmp_path: Path) -> None:
    fake_install(tmp_path, "claude")
    claude = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), NO_KEYS)["claude"]
    assert claude["usable"] is False
    assert "$ANTHROPIC_API_KEY" in str(claude["reason"])


def test_a_credential_file_counts_and_follows_the_agents_config_home(tmp_path: Path) -> None:
    fake_install(tmp_path, "codex")
    (tmp_path / "codex-home").mkdir()
    (tmp_path / "codex-home" / "auth.json").write_text("{}")
    env = {**NO_KEYS, "CODEX_HOME": str(tmp_path / "codex-home")}
    codex = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), env)["codex"]
    assert codex["credentials"] == {"present": True, "source": "~/.codex/auth.json"}


def test_a_model_url_counts_as_credentials(tmp_path: Path) -> None:
    fake_install(tmp_path, "codex")
    config = DaemonConfig(agents_dir=str(tmp_path), model_url="http://127.0.0.1:9")
    assert facts_by_name(config, NO_KEYS)["codex"]["credentials"] == {"present": True, "source": "modelUrl"}


def test_a_model_url_is_shown_without_its_credentials(tmp_path: Path) -> None:
    config = DaemonConfig(agents_dir=str(tmp_path), model_url="https://me:secret@gateway.test:8443/llm")
    assert facts_by_name(config, NO_KEYS)["claude"]["modelUrl"] == "https://***@gateway.test:8443/llm"


def test_the_mock_agent_is_always_usable(tmp_path: Path) -> None:
    mock = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), NO_KEYS)["mock"]
    assert (mock["usable"], mock["source"]) == (True, "acpd")


def codex_without_bwrap(agents_dir: Path, *args: str) -> dict[str, Any]:
    """Codex's facts, installed and routed to a model URL, where PATH has no bwrap."""
    if not preset_program(PRESETS["codex"], agents_dir).exists():
        fake_install(agents_dir, "codex")
    bare = agents_dir / "bare-path"
    bare.mkdir(exist_ok=True)
    agents = {"codex": AgentConfig(args=args)} if args else {}
    config = DaemonConfig(agents_dir=str(agents_dir), model_url="http://127.0.0.1:9", agents=agents)
    return facts_by_name(config, {**NO_KEYS, "PATH": str(bare)})["codex"]


def test_codex_without_bubblewrap_is_unusable_and_says_how_to_install_it_or_opt_out(tmp_path: Path) -> None:
    codex = codex_without_bwrap(tmp_path)
    assert codex["available"] is True
    assert codex["usable"] is False
    assert "bwrap not found on PATH: install bubblewrap (Debian: apt install bubblewrap)" in codex["reason"]
    assert 'sandbox_mode="danger-full-access"' in codex["reason"]


@pytest.mark.parametrize(
    "args",
    [("-c", 'sandbox_mode="danger-full-access"'), ("--config=sandbox_mode=danger-full-access",)],
)
def test_codex_without_bubblewrap_is_usable_when_its_sandbox_is_turned_off_explicitly(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    assert codex_without_bwrap(tmp_path, *args)["usable"] is True


def test_codex_without_bubblewrap_stays_unusable_when_its_sandbox_is_set_to_another_mode(tmp_path: Path) -> None:
    assert codex_without_bwrap(tmp_path, "-c", 'sandbox_mode="read-only"')["usable"] is False


def test_codex_reads_its_sandbox_setting_from_its_own_config_file(tmp_path: Path) -> None:
    home = tmp_path / "home" / ".codex"
    home.mkdir(parents=True)
    (home / "config.toml").write_text('sandbox_mode = "danger-full-access"\n')
    fake_install(tmp_path, "codex")
    config = DaemonConfig(agents_dir=str(tmp_path), model_url="http://127.0.0.1:9")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path / "home")}
    assert facts_by_name(config, env)["codex"]["usable"] is True
    assert facts_by_name(config, {**env, "CODEX_HOME": str(tmp_path)})["codex"]["usable"] is False


def test_codex_with_bubblewrap_on_path_or_bundled_next_to_it_is_usable(tmp_path: Path) -> None:
    assert codex_without_bwrap(tmp_path)["usable"] is False
    bwrap = tmp_path / "bare-path" / "bwrap"
    bwrap.write_text("#!/bin/sh\n")
    bwrap.chmod(0o755)
    assert codex_without_bwrap(tmp_path)["usable"] is True
    bwrap.unlink()
    bundled = preset_program(PRESETS["codex"], tmp_path).parent / "codex-resources" / "bwrap"
    bundled.parent.mkdir()
    bundled.write_text("")
    assert codex_without_bwrap(tmp_path)["usable"] is True


async def test_get_agents_reports_the_same_facts(client: httpx.AsyncClient, config: DaemonConfig) -> None:
    items = (await client.get("/v1/agents")).json()["items"]
    assert [item["name"] for item in items] == [facts["name"] for facts in all_agent_facts(config)]
    assert {"usable", "reason", "version", "credentials", "source"} <= set(items[0])


# -- install, with a stand-in npm on PATH ------------------------------------------------------------


def fake_npm(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder.mkdir()
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def registry() -> Iterator[str]:
    """A URL where something listens, standing in for a reachable registry."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def unreachable_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"  # closed again: connecting is refused


def npm_script(registry: str, install: str) -> str:
    return f'if [ "$1" = config ]; then echo {registry}; exit 0; fi\n{install}'


async def test_an_unreachable_registry_fails_at_once_without_waiting_for_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)  # behind a proxy the check is skipped
    url = unreachable_url()
    fake_npm(tmp_path / "bin", npm_script(url, "echo npm must not run >&2; exit 9\n"), monkeypatch)
    with pytest.raises(InstallFailed, match=r"registry .* cannot be reached") as caught:
        await install_preset(preset_named("gemini"), tmp_path / "agents")
    assert url in caught.value.message


async def test_install_runs_npm_on_the_pinned_manifest_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: str
) -> None:
    program = PRESETS["gemini"].program
    install = f'mkdir -p "$(dirname {program})" && echo "$*" > {program}\n'
    fake_npm(tmp_path / "bin", npm_script(registry, install), monkeypatch)
    seen: list[Progress] = []
    installed = await install_preset(preset_named("gemini"), tmp_path / "agents", seen.append)
    assert installed == tmp_path / "agents" / "gemini" / program
    assert installed.read_text().startswith("install --no-audit")
    manifest = json.loads((tmp_path / "agents" / "gemini" / "package.json").read_text())
    assert manifest["dependencies"] == {"@google/gemini-cli": "0.61.0"}
    assert seen[-1].done
    assert seen[-1].bytes_on_disk > 0


async def test_a_network_failure_during_npm_install_is_a_clear_install_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: str
) -> None:
    fake_npm(tmp_path / "bin", npm_script(registry, "echo 'npm error code ENOTFOUND' >&2\nexit 1\n"), monkeypatch)
    with pytest.raises(InstallFailed, match="registry cannot be reached") as caught:
        await install_preset(preset_named("opencode"), tmp_path / "agents")
    assert "ENOTFOUND" in caught.value.data["npmOutput"]


async def test_install_without_npm_says_to_install_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InstallFailed, match="npm is not on PATH"):
        await install_preset(preset_named("claude"), tmp_path / "agents")


def test_installing_an_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(InstallFailed, match="claude, codex, gemini, opencode"):
        preset_named("vim")


def test_an_unusable_agent_lists_every_reason_not_installed_first(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    claude = facts_by_name(DaemonConfig(agents_dir=str(tmp_path)), env)["claude"]
    assert [r.split(" ")[0] for r in claude["reasons"]] == ["not", "claude", "no"]
    assert claude["reasons"][1].endswith("`node` is not on PATH")
    assert claude["reason"] == "; ".join(claude["reasons"])
