"""Test kit: the mock agent's ``hostile`` command, content a malicious or confused agent might send to
a client that renders it: HTML with script and event handlers, ``javascript:`` links and Markdown
that wraps them, in every place a client shows an agent's words (a message, thinking, a tool call's
title, locations and diff, a plan). Each payload would set ``window.__acpdPwned`` if it ever ran. Pure
data; no I/O.
"""

from __future__ import annotations

from typing import Final

from acpd.testing._mock_sessions import JsonObject

RUN: Final = "window.__acpdPwned=1"
HTML: Final = (
    f"<script>{RUN}</script>",
    f'<img src="x" onerror="{RUN}">',
    f'<svg onload="{RUN}"></svg>',
    f'<iframe srcdoc="<script>{RUN}</script>"></iframe>',
    f'<a href="javascript:{RUN}">html link</a>',
)
MARKDOWN: Final = "\n".join(
    (
        "# Heading <b>bold?</b>",
        "",
        f"A paragraph with {HTML[0]} and {HTML[1]} inline.",
        "",
        f"[a javascript link](javascript:{RUN}) and ![an image](javascript:{RUN}) and [data](data:text/html,x)",
        "",
        f"- a list item {HTML[2]}",
        f"- [ ] a task {HTML[3]}",
        "",
        f"> a quote {HTML[4]}",
        "",
        "```html",
        HTML[0],
        "```",
        "",
        f"`{HTML[1]}` **{HTML[2]}** _{HTML[4]}_",
    )
)
"""The message: every HTML payload, raw and inside Markdown constructs."""


def updates(call_id: str, path: str) -> list[JsonObject]:
    """The command's updates, in order: a message, thinking, a plan, and an edit with a diff."""
    text = {"type": "text", "text": MARKDOWN}
    diff = {"type": "diff", "path": path, "oldText": f"safe\n{HTML[0]}\n", "newText": f"safe\n{HTML[1]}\n"}
    return [
        {"sessionUpdate": "agent_message_chunk", "content": text},
        {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": HTML[1]}},
        {"sessionUpdate": "plan", "entries": [{"content": HTML[2], "priority": "high", "status": "pending"}]},
        {
            "sessionUpdate": "tool_call",
            "toolCallId": call_id,
            "title": HTML[3],
            "kind": "edit",
            "status": "completed",
            "locations": [{"path": f"{path}{HTML[4]}"}],
            "content": [diff, {"type": "content", "content": {"type": "text", "text": HTML[0]}}],
        },
    ]
