"""``acpd agents list`` and ``acpd agents install`` as a user runs them (in process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from acpd.cli import main
from acpd.presets import PRESETS


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return int(exited.value.code or 0)


def test_agents_list_json_reports_every_agent_from_the_local_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["agents", "list", "--json", "--agents-dir", str(tmp_path)]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert sorted(item["name"] for item in items) == sorted([*PRESETS, "mock", "claude-native"])


def test_agents_install_shows_progress_and_where_it_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    program = PRESETS["opencode"].program
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f'#!/bin/sh\nmkdir -p "$(dirname {program})" && touch {program}\n')
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert run(["agents", "install", "opencode", "--agents-dir", str(tmp_path / "agents")]) == 0
    err = capsys.readouterr().err
    assert "installing opencode: opencode-ai@1.18.33" in err
    assert "MiB done" in err
    assert f"installed opencode: {tmp_path / 'agents' / 'opencode' / program}" in err


def test_agents_install_of_an_unknown_name_fails_with_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["agents", "install", "vim", "--agents-dir", str(tmp_path)]) == 1
    assert "installable agents: claude, codex, gemini, opencode" in capsys.readouterr().err


def test_a_config_file_cannot_set_what_acpd_fills_in_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "acpd.toml"
    config.write_text('[agents.evil]\ncommand = "x"\nfiles = { "/tmp/x" = "y" }\n')
    assert run(["agents", "list", "--config", str(config)]) == 1
    assert "'evil': files cannot be set" in capsys.readouterr().err
