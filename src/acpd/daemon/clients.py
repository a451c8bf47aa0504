"""Daemon layer: the ACP clients attached to one session, and which of them serves an agent's call.

An agent's ``fs/*`` and ``terminal/*`` calls go to an attached editor that advertised the matching
capability (it sees unsaved buffers and shows terminals), preferring the client whose prompt is
running; otherwise the daemon serves them itself. A terminal stays with whoever created it. It
knows no transport and must not write the event log.
"""

from __future__ import annotations

from typing import Final, Protocol

from acpd.errors import RpcError
from acpd.protocol import methods
from acpd.protocol.jsonio import JsonObject, JsonValue

CAPABILITY_FOR: Final = {
    methods.FS_READ_TEXT_FILE: ("fs", "readTextFile"),
    methods.FS_WRITE_TEXT_FILE: ("fs", "writeTextFile"),
}
LOCAL: Final = "daemon"


class ClientLink(Protocol):
    """An attached ACP client, as a session sees it."""

    @property
    def link_id(self) -> str: ...

    @property
    def client_capabilities(self) -> JsonObject: ...

    async def relay(self, method: str, params: JsonObject) -> JsonValue:
        """Send an agent's request to this client and return its result (or raise its error)."""
        ...


def advertises(link: ClientLink, method: str) -> bool:
    caps = link.client_capabilities
    if method.startswith("terminal/"):
        return caps.get("terminal") is True
    group, name = CAPABILITY_FOR.get(method, ("", ""))
    section = caps.get(group)
    return isinstance(section, dict) and section.get(name) is True


class AttachedClients:
    """The clients attached to one session, in attach order."""

    def __init__(self) -> None:
        self._links: dict[str, ClientLink] = {}
        self._terminal_owner: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._links)

    def attach(self, link: ClientLink) -> None:
        self._links[link.link_id] = link

    def detach(self, link_id: str) -> None:
        self._links.pop(link_id, None)

    def detach_link(self, link: ClientLink) -> None:
        """Detach ``link`` if it is the one attached under its id (a client that attached again
        under the same id, as a link's client does once its daemon took the session over, stays)."""
        if self._links.get(link.link_id) is link:
            del self._links[link.link_id]

    def is_attached(self, link_id: str) -> bool:
        return link_id in self._links

    def route(self, method: str, params: JsonObject, preferred: str | None) -> ClientLink | None:
        """The client to relay ``method`` to, or None to serve it in the daemon.

        Raises:
            RpcError: the terminal's owner has gone, so nobody can answer for it.
        """
        terminal_id = params.get("terminalId")
        if method != methods.TERMINAL_CREATE and isinstance(terminal_id, str) and terminal_id in self._terminal_owner:
            owner = self._terminal_owner[terminal_id]
            if owner == LOCAL:
                return None
            link = self._links.get(owner)
            if link is None:
                raise RpcError.invalid_params(f"terminal {terminal_id!r} belonged to a client that has detached")
            return link
        candidates = [self._links[preferred]] if preferred in self._links else []
        candidates += [link for link in self._links.values() if link.link_id != preferred]
        return next((link for link in candidates if advertises(link, method)), None)

    def note_terminal(self, method: str, result: JsonValue, owner: ClientLink | None) -> None:
        """Remember who owns a terminal created by ``result``; forget it on release."""
        if method == methods.TERMINAL_CREATE and isinstance(result, dict) and isinstance(result.get("terminalId"), str):
            self._terminal_owner[str(result["terminalId"])] = owner.link_id if owner is not None else LOCAL

    def forget_terminal(self, terminal_id: object) -> None:
        if isinstance(terminal_id, str):
            self._terminal_owner.pop(terminal_id, None)
