"""Adapters layer: reading typed fields out of an agent's raw JSON-RPC params. Pure; no I/O.

Each helper raises ``RpcError.invalid_params`` naming the field, which goes back to the agent.
"""

from __future__ import annotations

from acpd.errors import RpcError
from acpd.protocol.jsonio import JsonObject


def str_param(params: JsonObject, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise RpcError.invalid_params(f"{name!r} must be a string")
    return value


def optional_str_param(params: JsonObject, name: str) -> str | None:
    return None if params.get(name) is None else str_param(params, name)


def optional_int_param(params: JsonObject, name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RpcError.invalid_params(f"{name!r} must be an integer or null")
    return value


def str_list_param(params: JsonObject, name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RpcError.invalid_params(f"{name!r} must be an array of strings")
    return value
