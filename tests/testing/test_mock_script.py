"""The mock agent's prompt language, parsed without a process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import pytest

from acpd import errors
from acpd.testing import _mock_rpc
from acpd.testing._mock_script import COMMANDS, Command, ScriptError, parse_prompt
from acpd.testing._mock_sessions import MockSession
from acpd.testing._mock_turn import Turn

DOCS = Path(__file__).parents[2] / "docs" / "mock-agent.md"


@pytest.mark.parametrize(
    "prompt",
    ["", "\n\n", "hello", "Text me later", "plan my day", "chunks a lot", "meta analysis please", "stop now"],
)
def test_a_prompt_whose_first_line_is_not_a_valid_command_is_echoed(prompt: str) -> None:
    assert parse_prompt(prompt) is None


def test_blank_lines_are_skipped_and_lines_are_numbered_as_written() -> None:
    commands = parse_prompt("\n  text hello  world \n\nchunks 3\n")

    assert commands == [Command("text", 2, text="hello  world"), Command("chunks", 4, ints=(3, 0))]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("text", Command("text", 1)),
        ("chunks 10 64", Command("chunks", 1, ints=(10, 64))),
        ("think it over", Command("think", 1, text="it over")),
        ("tool execute Run the tests", Command("tool", 1, word="execute", text="Run the tests")),
        ("permission", Command("permission", 1, word="edit")),
        ("permission delete", Command("permission", 1, word="delete")),
        ("plan 3", Command("plan", 1, ints=(3,))),
        ("usage 100 20 0.5", Command("usage", 1, ints=(100, 20), number=0.5)),
        ("usage 1 2", Command("usage", 1, ints=(1, 2))),
        ("sleep 0.25", Command("sleep", 1, number=0.25)),
        ("error", Command("error", 1, ints=(-32603,), text="Mock error")),
        ("error -32000 auth needed", Command("error", 1, ints=(-32000,), text="auth needed")),
        ("error out of cheese", Command("error", 1, ints=(-32603,), text="out of cheese")),
        ("crash", Command("crash", 1, ints=(3,))),
        ("crash 0", Command("crash", 1, ints=(0,))),
        ("garbage", Command("garbage", 1)),
        ("garbage 5000", Command("garbage", 1, ints=(5000,))),
        ("stderr-flood 1048576", Command("stderr-flood", 1, ints=(1048576,))),
        ("stderr oops", Command("stderr", 1, text="oops")),
        ("title My session", Command("title", 1, text="My session")),
        ("mode plan", Command("mode", 1, word="plan")),
        ("read src/a b.py", Command("read", 1, text="src/a b.py")),
        ("write out.txt hello there", Command("write", 1, word="out.txt", text="hello there")),
        ("run ls -la | wc -l", Command("run", 1, text="ls -la | wc -l")),
        ("meta", Command("meta", 1)),
        ("big 1048576", Command("big", 1, ints=(1048576,))),
        ("stop refusal", Command("stop", 1, word="refusal")),
    ],
)
def test_each_command_parses_its_arguments(line: str, expected: Command) -> None:
    assert parse_prompt(line) == [expected]


@pytest.mark.parametrize(
    "line",
    [
        "chunks -1",
        "chunks 1 0",
        "chunks 1 2 3",
        "tool",
        "tool hammer",
        "permission smash",
        "usage 1",
        "usage 1 2 -3",
        "sleep forever",
        "sleep nan",
        "crash 256",
        "mode turbo",
        "read",
        "write",
        "run",
        "big",
        "stop whenever",
        "garbage now",
        "garbage 1 2",
        "stderr-flood",
        "chunks ²",
        "nonsense",
    ],
)
def test_a_bad_later_line_rejects_the_script_and_names_the_line(line: str) -> None:
    with pytest.raises(ScriptError, match=r"^line 2: "):
        parse_prompt(f"text ok\n{line}")


def test_every_command_has_a_handler() -> None:
    turn = Turn(_NoPort(), MockSession("mock-test", "/"), "", [])

    assert set(turn._handlers) == COMMANDS


def test_every_command_is_documented_with_an_example() -> None:
    docs = DOCS.read_text()
    headed = set(re.findall(r"^### `([\w-]+)", docs, flags=re.MULTILINE))

    assert headed == COMMANDS


class _NoPort:
    def send_update(self, session_id: str, update: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        raise AssertionError("not used")

    def write_raw(self, data: bytes) -> None:
        raise AssertionError("not used")

    async def drain(self) -> None:
        raise AssertionError("not used")

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        raise AssertionError("not used")

    async def crash(self, code: int) -> NoReturn:
        raise AssertionError("not used")


def test_the_mocks_error_codes_are_acpds() -> None:
    for name in ("PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR"):
        assert getattr(_mock_rpc, name) == getattr(errors, name)
    assert _mock_rpc.RESOURCE_NOT_FOUND == errors.RESOURCE_NOT_FOUND
