"""What the daemon derives from the environment is kept until the environment changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acpd.config import DaemonConfig
from acpd.daemon.log import environment_redactor
from acpd.environ import environ_version
from acpd.presets import PRESETS, preset_program


def test_the_environment_version_changes_only_when_the_environment_does(monkeypatch: pytest.MonkeyPatch) -> None:
    before = environ_version()
    assert environ_version() == before
    monkeypatch.setenv("ACPD_TEST_ENVIRON", "one")
    changed = environ_version()
    assert changed != before
    assert environ_version() == changed
    monkeypatch.setenv("ACPD_TEST_ENVIRON", "two")
    assert environ_version() != changed


def test_agents_are_resolved_once_while_nothing_changes(tmp_path: Path) -> None:
    config = DaemonConfig(agents_dir=str(tmp_path))
    first, second = config.all_agents(), config.all_agents()
    assert first == second and first is not second  # the caller's own dict
    assert all(first[name] is second[name] for name in first)  # the same resolved configs


def test_agents_are_resolved_again_when_the_environment_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DaemonConfig(agents_dir=str(tmp_path))

    def inline_theme() -> object:
        return json.loads(config.all_agents()["opencode"].env["OPENCODE_CONFIG_CONTENT"]).get("theme")

    monkeypatch.setenv("OPENCODE_CONFIG_CONTENT", json.dumps({"theme": "dark"}))
    assert inline_theme() == "dark"
    monkeypatch.setenv("OPENCODE_CONFIG_CONTENT", json.dumps({"theme": "light"}))
    assert inline_theme() == "light"


def test_a_preset_installed_after_the_first_resolution_is_seen_at_once(tmp_path: Path) -> None:
    config = DaemonConfig(agents_dir=str(tmp_path))
    assert not config.all_agents()["gemini"].installed
    program = preset_program(PRESETS["gemini"], tmp_path)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert config.all_agents()["gemini"].installed


def test_a_preset_installed_into_an_agents_directory_that_did_not_exist_is_seen_at_once(tmp_path: Path) -> None:
    agents_dir = tmp_path / "agents"  # not there yet: one look answers for every preset
    config = DaemonConfig(agents_dir=str(agents_dir))
    assert [name for name in PRESETS if config.all_agents()[name].installed] == []
    program = preset_program(PRESETS["codex"], agents_dir)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert [name for name in PRESETS if config.all_agents()[name].installed] == ["codex"]


def test_the_logs_redactor_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert environment_redactor() is environment_redactor()  # built once, not once per session
    secret = "sk-acpd-test-" + "q" * 24
    monkeypatch.setenv("ACPD_TEST_API_KEY", secret)
    assert secret not in environment_redactor()(f"the key is {secret}")
