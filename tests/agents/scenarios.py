"""What each real agent is told to do, in the mock model server's prompt language.

Each agent offers its shell tool under its own name and argument shape; the directives below
make the mock model call it. A write needs permission in every agent's default mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

WRITE: Final = "echo hi > hi.txt && cat hi.txt"


@dataclass(frozen=True)
class Scenario:
    agent: str
    tool: str
    argument: str
    extra: tuple[tuple[str, str], ...] = ()

    def run(self, command: str) -> str:
        """A prompt that makes the model call the shell tool with ``command``."""
        arguments = {self.argument: command, **dict(self.extra)}
        return f"Please run a command.\nmock:tool={self.tool} input={json.dumps(arguments)}"


SCENARIOS: Final = {
    "claude": Scenario("claude", "Bash", "command", (("description", "Run it"),)),
    "codex": Scenario("codex", "exec_command", "cmd"),
    "gemini": Scenario("gemini", "run_shell_command", "command"),
    "opencode": Scenario("opencode", "bash", "command", (("description", "Run it"),)),
}


def slow_command(marker: str) -> str:
    """A command that runs for a minute and is easy to find in /proc by its marker."""
    return f"python3 -c 'import time; time.sleep(60)' {marker}"
