"""``acpd serve``'s and ``acpd acp``'s plain command lines are read without argparse into what
argparse makes of them; every other command line is left to argparse (``acpd.cli.plain_args``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from acpd.cli import _add_acp, _add_serve, build_parser
from acpd.cli.plain_args import Recorder, plain_args
from acpd.testing.daemon import daemon_env

PLAIN = [
    [],
    ["--port", "0", "--port-file", "/dev/fd/3"],
    ["--port=0", "--host=127.0.0.1", "--db", ":memory:", "--data-dir", "d", "--agents-dir", "a"],
    ["--no-auth", "--share-db", "--db", "postgresql://x/y", "--log-level", "debug"],
    ["--idle-seconds", "0.5", "--max-live-sessions", "7", "--token-file", "t", "--config", "c.toml"],
    ["--model-url", "http://127.0.0.1:1", "--record-agents", "r", "--port", "1", "--port", "2"],
    ["--db=", "--log-level=error", "--idle-seconds", "1e3"],
]
"""Command lines of options in full, with values their types and choices accept."""
NOT_PLAIN = [
    ["--help"],
    ["-h"],
    ["--po", "0"],  # an abbreviation argparse accepts
    ["--port", "-1"],  # a value starting with "-"
    ["--port"],
    ["--port", "x"],
    ["--log-level", "loud"],
    ["--no-auth=yes"],
    ["--nope"],
    ["extra"],
    ["--", "--port", "0"],
    ["--version"],
]
"""Command lines argparse reads (help), reads otherwise than in full, or refuses with its message."""


ACP_PLAIN = [
    [],
    ["--agent", "mock", "--url", "http://127.0.0.1:1"],
    ["-a", "mock", "--standalone", "--db", ":memory:", "--log-level=info"],
    ["-a=mock", "--data-dir", "d"],
]
ACP_NOT_PLAIN = [["-amock"], ["-a"], ["--standalone=1"], ["--log-level", "loud"], ["--help"], ["--stand"]]


def by_argparse(words: list[str], command: str = "serve") -> dict[str, Any]:
    return vars(build_parser(command).parse_args([command, *words]))


@pytest.mark.parametrize("words", PLAIN, ids=" ".join)
def test_a_plain_serve_command_line_is_read_as_argparse_reads_it(words: list[str]) -> None:
    plain = plain_args(words, _add_serve)
    assert plain is not None
    assert vars(plain) == by_argparse(words)


@pytest.mark.parametrize("words", NOT_PLAIN, ids=" ".join)
def test_any_other_serve_command_line_is_left_to_argparse(words: list[str]) -> None:
    assert plain_args(words, _add_serve) is None


@pytest.mark.parametrize("words", ACP_PLAIN, ids=" ".join)
def test_a_plain_acp_command_line_is_read_as_argparse_reads_it(words: list[str]) -> None:
    plain = plain_args(words, _add_acp)
    assert plain is not None
    assert vars(plain) == by_argparse(words, "acp")


@pytest.mark.parametrize("words", ACP_NOT_PLAIN, ids=" ".join)
def test_any_other_acp_command_line_is_left_to_argparse(words: list[str]) -> None:
    assert plain_args(words, _add_acp) is None


def test_a_declaration_of_a_kind_not_read_here_leaves_every_command_line_to_argparse() -> None:
    def declare(parser: Any) -> None:
        parser.add_argument("--port", type=int)
        parser.add_argument("--tags", nargs="*")

    assert plain_args(["--port", "1"], declare) is None
    recorder = Recorder()
    declare(recorder)
    assert not recorder.plain
    parser = argparse.ArgumentParser()
    declare(parser)  # the same declaration, which argparse reads
    assert parser.parse_args(["--tags", "a", "b"]).tags == ["a", "b"]


SERVE_HELP = """
import sys
from acpd.cli import main
main(["serve", *sys.argv[1:]])
"""


@pytest.mark.parametrize(
    ("words", "code", "says"),
    [(["--help"], 0, "--port-file PORT_FILE"), (["--port", "x"], 2, "argument --port: invalid int value: 'x'")],
)
def test_serve_help_and_mistakes_are_argparses(tmp_path: Path, words: list[str], code: int, says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_HELP, *words], capture_output=True, text=True, timeout=60, env=daemon_env(tmp_path)
    )
    assert (done.returncode, says in done.stdout + done.stderr) == (code, True), json.dumps([done.stdout, done.stderr])
