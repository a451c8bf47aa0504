"""Adapters layer: a short title for a conversation, written by a model through claude-native's
shared ``anthropic`` client (``titles = "model"``). One small, tool-less call per session; it must
not know about sessions, the store or the daemon.
"""

from __future__ import annotations

import os
import re
from typing import Final

from acpd.config import AgentConfig

from . import clients
from .backend import client_options

TITLE_MODEL: Final = "claude-haiku-5-5"
"""The model that writes titles, unless the agent's ``ANTHROPIC_SMALL_FAST_MODEL`` says otherwise
(the variable Claude Code reads for the same chore)."""
INSTRUCTION: Final = (
    "Write a title of at most six words for a conversation that begins with the message below."
    " Answer with the title only: no quotes, no punctuation at the end.\n\n"
)
PROMPT_CHARS: Final = 2_000
"""What of the first prompt the model sees: its start is enough to name it."""
TITLE_CHARS: Final = 80
MAX_TOKENS: Final = 32
_SPACES: Final = re.compile(r"\s+")


async def written_title(config: AgentConfig, text: str) -> str | None:
    """A title for a conversation that starts with ``text``; None when the model wrote nothing usable.

    Raises:
        AgentUnavailable: the agent has no credentials and no model URL.
        anthropic.APIError: the call failed.
    """
    options = client_options(config)
    env = {**os.environ, **config.env}
    model = env.get("ANTHROPIC_SMALL_FAST_MODEL") or TITLE_MODEL
    client = await clients.acquire(options)
    try:
        message = await client.messages.create(
            model=model,
            max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": INSTRUCTION + text[:PROMPT_CHARS]}],
        )
    finally:
        await clients.release(options)
    return cleaned("".join(block.text for block in message.content if block.type == "text"))


def cleaned(written: str) -> str | None:
    """The first line the model wrote, without the quotes, heading marks or end punctuation
    models add anyway, spaces collapsed, cut at ``TITLE_CHARS``."""
    lines = [line for line in written.splitlines() if line.strip()]
    if not lines:
        return None
    title = _SPACES.sub(" ", lines[0]).strip().lstrip("#").strip().strip("\"'*`").rstrip(".:;!").strip()
    if title.lower().startswith("title:"):
        title = title[len("title:") :].strip()
    return title[:TITLE_CHARS].rstrip() or None
