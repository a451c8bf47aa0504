"""The official ACP v1 JSON schema (shipped by the pinned npm @agentclientprotocol/sdk that
scripts/setup-clients installs), as validators for single definitions."""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator

from acpd.protocol import jsonio
from tests.e2e.clients import require_clients


@functools.cache
def _schema() -> dict[str, Any]:
    path = require_clients() / "node_modules" / "@agentclientprotocol" / "sdk" / "schema" / "v1" / "schema.json"
    schema: dict[str, Any] = jsonio.loads(path.read_bytes())
    return schema


def validator(definition: str) -> Draft202012Validator:
    """A validator for ``$defs/<definition>`` (e.g. ``SessionNotification``)."""
    schema = _schema()
    return Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})


def problems(definition: str, value: Any) -> list[str]:
    """Why ``value`` is not a valid ``definition`` (empty when it is)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(definition).iter_errors(value)]
