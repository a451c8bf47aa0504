"""Adapters layer: whether claude-native has credentials, decided from its configuration and the
environment alone. The daemon's agent facts ask this without starting the backend, so this module
must not import the ``anthropic`` SDK (nor any module of this package that does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from acpd.config import AgentConfig

CREDENTIAL_VARIABLES: Final = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
"""A key, a token, or a base URL (a gateway or a mock may take no key): any one will do."""
NO_CREDENTIALS: Final = (
    "claude-native has no credentials: set $ANTHROPIC_API_KEY or $ANTHROPIC_AUTH_TOKEN, or a model URL "
    "(--model-url, $ACPD_MODEL_URL, the agent's modelUrl, or $ANTHROPIC_BASE_URL)"
)


def credential_source(config: AgentConfig, env: Mapping[str, str]) -> str | None:
    """Where claude-native's credentials come from (``modelUrl``, ``$ANTHROPIC_API_KEY``, …), or
    None when there are none. ``env`` is the daemon's environment with the agent's ``env`` on top."""
    if config.model_url:
        return "modelUrl"
    found = next((name for name in CREDENTIAL_VARIABLES if env.get(name)), None)
    return f"${found}" if found else None
