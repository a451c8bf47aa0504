"""Daemon layer: titles written by a model (``titles = "model"``). A session is named after its first
prompt at once; then, in the background, the configured claude-native agent's model writes a
short title, which replaces the derived one unless the agent or a user named the session first.
It never delays a turn, and a failed call leaves the derived title (logged, not recorded: it is
not the session's business). The model call is claude-native's; this module must not call an
SDK itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import anyio

from acpd.protocol.audit import prompt_text
from acpd.protocol.jsonio import JsonObject

if TYPE_CHECKING:
    from .manager import SessionManager

logger = logging.getLogger(__name__)

TITLE_SECONDS: Final = 30.0
"""How long a title's model call may take before the derived title is kept."""


async def write_title(manager: SessionManager, session_id: str, derived: str, prompt: list[JsonObject]) -> None:
    """Have ``config.title_agent``'s model name the session, then ``manager.retitle`` it."""
    name = manager.config.title_agent
    agent = manager.config.all_agents().get(name)
    if agent is None or agent.kind != "claude-native":
        logger.warning('titles = "model" needs title_agent to name a claude-native agent; %r is not one', name)
        return
    text = prompt_text(prompt).strip()
    if not text:
        return
    from acpd.adapters.claude_native.titles import written_title  # the SDK: only when titles are written

    try:
        with anyio.fail_after(TITLE_SECONDS):
            title = await written_title(agent, text)
    except Exception as exc:  # any failure of the call keeps the derived title
        logger.warning("no title from %s's model for session %s: %s", name, session_id, exc)
        return
    if title is not None:
        await manager.retitle(session_id, derived, title)
