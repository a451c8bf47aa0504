"""Adapters layer: backend kinds by name. Builds a ``Backend`` for a configured agent; no I/O.

A kind's module is imported the first time an agent of that kind is built, not before: the
daemon starts and idles without them (claude-native's ``anthropic`` SDK alone costs over a
second and tens of MiB). Nothing here may import a backend module at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from acpd.adapters.base import Backend
from acpd.errors import ConfigError
from acpd.imports import without_httpx_cli
from acpd.protocol.jsonio import JsonObject

if TYPE_CHECKING:
    from acpd.config import AgentConfig


def create_backend(
    name: str,
    config: AgentConfig,
    *,
    cwd: str,
    mcp_servers: Sequence[JsonObject] = (),
    record_dir: str | None = None,
) -> Backend:
    """A backend for the agent ``name``, not yet started.

    Raises:
        ConfigError: the agent's kind is unknown.
    """
    if config.kind == "acp":
        from acpd.adapters.acp import AcpBackend

        return AcpBackend(name, config, cwd=cwd, mcp_servers=mcp_servers, record_dir=record_dir)
    if config.kind == "claude-native":
        without_httpx_cli()  # the model SDK imports httpx
        from acpd.adapters.claude_native.backend import ClaudeNativeBackend

        return ClaudeNativeBackend(name, config, cwd=cwd)
    raise ConfigError(f"agent {name!r} has unknown kind {config.kind!r}")  # pragma: no cover - Literal-typed
