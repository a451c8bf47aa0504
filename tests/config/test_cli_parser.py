"""The command line builds only the parser of the command being run, and still lists and refuses
commands as a whole parser would."""

from __future__ import annotations

import argparse
import re

import pytest

from acpd.cli import build_parser, main


def commands_of(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_running_a_command_builds_only_its_parser() -> None:
    assert commands_of(build_parser("serve")) == ["serve"]
    args = build_parser("serve").parse_args(["serve", "--port", "0", "--no-auth"])
    assert (args.port, args.auth, args.log_level) == (0, False, "info")


def test_the_agents_parser_is_built_when_agents_runs() -> None:
    args = build_parser("agents").parse_args(["agents", "install", "codex", "--agents-dir", "x"])
    assert (args.names, args.agents_dir) == (["codex"], "x")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    commands = (
        "serve",
        "acp",
        "token",
        "mock-agent",
        "mock-model",
        "sessions",
        "prompt",
        "agents",
        "doctor",
        "completion",
    )
    for command in commands:
        assert re.search(rf"^    {command}\b", out, re.MULTILINE), command


def test_an_unknown_command_is_refused_with_the_commands_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serv"])
    assert exited.value.code == 2
    assert "invalid choice: 'serv' (choose from 'serve', 'acp'," in capsys.readouterr().err
