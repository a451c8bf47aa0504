"""What each real agent is told to do, in the mock model server's prompt language.

Each agent offers its shell tool under its own name and argument shape; the directives below
make the mock model call it. A write needs permission in every agent's default mode.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Final

WRITE: Final = "echo hi > hi.txt && cat hi.txt"


@dataclass(frozen=True)
class Scenario:
    agent: str
    tool: str
    argument: str
    extra: tuple[tuple[str, str], ...] = ()
    writer: tuple[str, str, str] | None = None
    """The agent's file-writing tool: (name, path argument, content argument); None: it has none
    the mock model can call (Codex writes with ``apply_patch``, a free-form tool the mock does not
    serve), so the shell writes the file."""

    def run(self, command: str) -> str:
        """A prompt that makes the model call the shell tool with ``command``."""
        arguments = {self.argument: command, **dict(self.extra)}
        return f"Please run a command.\nmock:tool={self.tool} input={json.dumps(arguments)}"

    def write(self, path: str, text: str) -> str:
        """A prompt that makes the model create ``path`` holding ``text`` with the agent's write tool."""
        if self.writer is None:
            return self.run(f"printf %s {shlex.quote(text)} > {shlex.quote(path)}")
        tool, path_argument, text_argument = self.writer
        arguments = {path_argument: path, text_argument: text}
        return f"Please write a file.\nmock:tool={tool} input={json.dumps(arguments)}"


SCENARIOS: Final = {
    "claude": Scenario("claude", "Bash", "command", (("description", "Run it"),), ("Write", "file_path", "content")),
    "codex": Scenario("codex", "exec_command", "cmd"),
    "gemini": Scenario("gemini", "run_shell_command", "command", writer=("write_file", "file_path", "content")),
    "opencode": Scenario("opencode", "bash", "command", (("description", "Run it"),), ("write", "filePath", "content")),
}


def slow_command(marker: str) -> str:
    """A command that runs for a minute and is easy to find in /proc by its marker."""
    return f"python3 -c 'import time; time.sleep(60)' {marker}"
