"""Adapters layer: backend kinds by name. Builds a ``Backend`` for a configured agent; no I/O.

A kind's module is imported the first time an agent of that kind is built, not before: the
daemon starts and idles without them (claude-native's ``anthropic`` SDK alone costs over a
second and tens of MiB). Nothing here may import a backend module at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from acpd.adapters.base import Backend
from acpd.errors import ConfigError
from acpd.imports import without_httpx_cli
from acpd.protocol.jsonio import JsonObject

if TYPE_CHECKING:
    from acpd.adapters.acp_pool import AgentPool
    from acpd.config import AgentConfig


class BackendPools:
    """The agent processes sessions share (``acp_pool``), created at the first agent start and
    stopped with the daemon. Their processes run in the daemon's task group."""

    def __init__(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._acp: AgentPool | None = None

    def acp(self) -> AgentPool:
        if self._acp is None:
            from acpd.adapters.acp_pool import AgentPool

            self._acp = AgentPool(self._task_group)
        return self._acp

    def running(self, name: str, config: AgentConfig, *, cwd: str, mcp_servers: Sequence[JsonObject]) -> bool:
        """Whether a process of this agent for such a session already runs (see ``AgentPool.running``)."""
        if config.kind != "acp" or self._acp is None:
            return False
        return self._acp.running(name, config, cwd=cwd, mcp_servers=mcp_servers)

    async def aclose(self) -> None:
        """Stop every pooled process (the sessions on them have closed)."""
        if self._acp is not None:
            await self._acp.aclose()


def create_backend(
    name: str,
    config: AgentConfig,
    *,
    cwd: str,
    mcp_servers: Sequence[JsonObject] = (),
    record_dir: str | None = None,
    pools: BackendPools,
) -> Backend:
    """A backend for the agent ``name``, not yet started; an ACP agent's session is served by a
    process of ``pools``.

    Raises:
        ConfigError: the agent's kind is unknown.
    """
    if config.kind == "acp":
        from acpd.adapters.acp import AcpBackend

        return AcpBackend(name, config, cwd=cwd, mcp_servers=mcp_servers, record_dir=record_dir, pool=pools.acp())
    if config.kind == "claude-native":
        without_httpx_cli()  # the model SDK imports httpx
        from acpd.adapters.claude_native.backend import ClaudeNativeBackend

        return ClaudeNativeBackend(name, config, cwd=cwd)
    raise ConfigError(f"agent {name!r} has unknown kind {config.kind!r}")  # pragma: no cover - Literal-typed
