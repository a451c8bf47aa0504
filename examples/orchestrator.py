"""An orchestrator driving acpd from Python with its typed client, ``acpd.client.Acpd``.

It creates a claude-native session, streams a turn whose tool call asks permission and answers it
from code, switches the session to another agent mid-conversation (the transcript goes with it),
and prints what the turns spent. Offline, with acpd's mock model server standing in for the model:

    acpd mock-model --port 8787 &
    acpd serve --model-url http://127.0.0.1:8787 &
    python examples/orchestrator.py            # or: --url URL (ACPD_URL); the token: ACPD_TOKEN, else the local one

With a real key instead (``ANTHROPIC_API_KEY`` in the daemon's environment), the same code drives
a real Claude. Prints one line per step; exits 1 if a turn does not end with ``end_turn``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from acpd.api.models import Usage  # a turn's usage and the session's totals both are one
from acpd.client import Acpd, EventRecord, PermissionRequest

PROMPT = "Say hi using the shell"
"""The mock model answers a prompt that offers a shell tool with one call of it (``echo hi``),
which claude-native's default mode asks permission for."""
SWITCH_TO = "mock"
"""The agent to switch to: acpd's scripted mock agent, which needs no credentials."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("ACPD_URL", "http://127.0.0.1:4520"))
    parser.add_argument("--cwd", default=os.getcwd(), help="the session's working directory")
    args = parser.parse_args()
    with Acpd(args.url) as acpd:  # the token: ACPD_TOKEN, else the local daemon's token file
        session = acpd.create_session("claude-native", cwd=Path(args.cwd).resolve(), title="orchestrator example")
        say(f"session {session.id} on {session.agent}")

        # 1. Stream a turn; its permission request is answered by decide() as it arrives.
        turn = acpd.stream(session.id, PROMPT, on_permission=decide)
        for record in turn:
            show(record)
        first = turn.result
        say(f"turn {first.turn}: {first.stop_reason}, text {first.text!r}")

        # 2. Switch the agent mid-session: the new one gets the conversation so far as context.
        acpd.update_session(session.id, agent=SWITCH_TO)
        second = acpd.prompt(session.id, "text switched agents, the conversation goes on")
        say(f"switched to {acpd.session(session.id).agent}; turn {second.turn}: {second.stop_reason}, {second.text!r}")

        # 3. What it cost: per turn, and the session's running totals.
        say(f"usage of turn {first.turn}: {describe(first.usage)}")
        say(f"usage of the session: {describe(acpd.session(session.id).usage)}")
    return 0 if first.stop_reason == second.stop_reason == "end_turn" else 1


def decide(request: PermissionRequest) -> str:
    """The orchestrator's policy: allow shell commands this once, reject anything else. Return
    ``once``, ``always`` or ``reject`` (or None to leave it to someone else)."""
    reply = "once" if request.tool_kind in ("execute", "read") else "reject"
    say(f"permission {request.id}: {request.title} ({request.tool_kind}) -> {reply}")
    return reply


def show(record: EventRecord) -> None:
    """A line for the records worth seeing as they stream: text, tool calls, their outcome."""
    update = record.update
    if update is None:
        return
    kind = update.session_update
    if kind == "agent_message_chunk" and getattr(update.content, "text", None):
        say(f"  text: {update.content.text!r}")
    elif kind == "tool_call":
        say(f"  tool call {update.tool_call_id}: {update.title} ({update.kind}, {update.status})")
    elif kind == "tool_call_update" and update.status:
        say(f"  tool call {update.tool_call_id}: {update.status}")


def describe(usage: Usage | None) -> str:
    if usage is None:
        return "not reported"
    return f"{usage.input_tokens} input + {usage.output_tokens} output = {usage.total_tokens} tokens"


def say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
