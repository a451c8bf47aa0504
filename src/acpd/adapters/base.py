"""Adapters layer: the Protocols between the daemon and a backend. No I/O here.

A backend serves one daemon session. The daemon gives it a ``SessionHost`` (what it may ask of the
daemon) and drives it through the ``Backend`` methods. Frames a backend hands to the host already
carry the daemon's session id in ``params.sessionId``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio.abc import TaskStatus

from acpd.adapters.workspace import Workspace
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject, JsonValue


@dataclass(frozen=True, slots=True)
class TextEnvelope:
    """The JSON text of a text chunk (``kind``: its ``sessionUpdate``) around its text, with the
    daemon's session id: ``prefix + text + suffix`` is the frame for any ``text`` that needs no
    escaping in JSON (no quote, backslash or control character)."""

    kind: str
    prefix: str
    suffix: str


class SessionHost(Protocol):
    """The daemon, as seen by one session's backend."""

    @property
    def session_id(self) -> str: ...

    @property
    def cwd(self) -> str: ...

    @property
    def turns(self) -> int:
        """The turns the session has had (0: a new session; more: a fork, an import, an agent
        switch, or a restart brought a conversation this backend may rebuild from ``history``)."""
        ...

    async def emit(self, message: JsonObject) -> None:
        """Record a frame the agent sent (``session/update`` or another notification)."""
        ...

    async def emit_texts(self, envelope: TextEnvelope, texts: list[str]) -> None:
        """Record one text chunk per text, in order: the same as ``emit`` of the parse of
        ``envelope.prefix + text + envelope.suffix`` for each (a stream of chunks, many at once)."""
        ...

    async def request_permission(self, message: JsonObject) -> JsonObject:
        """Broker a ``session/request_permission`` request; return its result (``{"outcome": …}``).
        The host sets ``params.sessionId`` to its own session id."""
        ...

    async def client_request(self, method: str, params: JsonObject) -> JsonValue:
        """Serve an agent's ``fs/*`` or ``terminal/*`` call (locally or through an attached editor).

        Raises:
            RpcError: the call is refused or fails; the message goes back to the agent.
        """
        ...

    async def workspace(self) -> Workspace:
        """The directories the session may touch (its cwd first, then ``additionalDirectories``):
        what ``fs/*`` and ``terminal/*`` are confined to, for a backend that searches them itself."""
        ...

    def permission_policy(self) -> str:
        """The session's permission policy now: ``ask``, ``allow``, ``deny`` or ``allow_reads``.

        For a backend that decides itself when to ask (claude-native's modes): whatever it decides,
        a ``deny`` or ``allow_reads`` policy must still see its changing calls.
        """
        ...

    def turn_stopping(self) -> bool:
        """True once the daemon has asked the running turn to end (a cancel, a limit such as
        ``maxSteps``, the timeout): a backend that runs tools itself starts none after this."""
        ...

    async def history(self) -> list[EventRecord]:
        """The session's event log so far, oldest first (for a backend that rebuilds its memory)."""
        ...

    def record_error(self, code: str, message: str, data: JsonObject | None = None) -> None:
        """Record an ``_acpd/error`` event (e.g. the agent wrote garbage to stdout)."""
        ...

    def backend_exited(self, returncode: int | None, stderr_tail: str) -> None:
        """The backend's process ended (called once, from the backend's own task); the tail is redacted."""
        ...


@dataclass(slots=True)
class BackendState:
    """What a started backend reports about its session."""

    backend_session_id: str | None
    how: str
    """``new``, ``load`` or ``resume``: how the backend session was obtained."""
    agent_info: JsonObject = field(default_factory=dict)
    capabilities: JsonObject = field(default_factory=dict)
    modes: JsonObject | None = None
    config_options: list[JsonObject] | None = None
    models: JsonObject | None = None
    from_log: bool = False
    """The backend rebuilt the session's conversation from its log (``SessionHost.history``), so it
    needs no transcript carried in front of its next prompt, even as a new backend session."""


class Backend(Protocol):
    """One session's agent. ``run`` owns its processes and tasks; the rest are called while it runs."""

    async def run(
        self,
        host: SessionHost,
        *,
        resume_id: str | None,
        task_status: TaskStatus[BackendState],
    ) -> None:
        """Start the agent and its session (loading or resuming ``resume_id`` when the agent can),
        report the state through ``task_status.started``, then serve until closed or exited.

        Raises:
            AgentUnavailable: the agent cannot be started.
            AgentError: it started but failed to open a session.
        """
        ...

    async def prompt(self, prompt: list[JsonObject]) -> JsonObject:
        """Run one turn; return the ``session/prompt`` result (``{"stopReason": …}``).

        Raises:
            RpcError: the agent answered with an error.
            AgentExited: the agent ended during the turn.
        """
        ...

    async def cancel(self) -> None:
        """Ask the agent to stop the running turn (``session/cancel``)."""
        ...

    async def set_mode(self, mode_id: str) -> None: ...

    async def set_config_option(self, config_id: str, value: Any) -> list[JsonObject] | None:
        """Set a backend config option; return the full new option list when the agent gives it."""
        ...

    async def set_model(self, model_id: str) -> None: ...

    async def aclose(self) -> None:
        """Stop the agent and its whole process tree; idempotent; returns promptly."""
        ...
