"""Protocol layer: JSON-RPC 2.0 messages as plain dicts: classify, build. Pure; no I/O.

Messages stay raw dicts end to end so unknown fields, ``_meta`` and newer ACP variants pass
through untouched; only what acpd must interpret is validated, at the edges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from acpd.protocol.jsonio import JsonObject, JsonValue

VERSION: Final = "2.0"
RequestId = int | str


class Kind(enum.Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a decoded value is not a JSON-RPC message, and the id to answer with if one was readable."""

    reason: str
    id: RequestId | None = None


def is_request_id(value: object) -> TypeGuard[RequestId]:
    # bool is an int subclass in Python but not a JSON-RPC id
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def classify(message: object) -> Kind | Invalid:
    """Sort a decoded JSON value into a message kind, or say why it is not one."""
    if not isinstance(message, dict):
        return Invalid("a message must be a JSON object")
    raw_id = message.get("id")
    msg_id = raw_id if is_request_id(raw_id) else None
    if message.get("jsonrpc") != VERSION:
        return Invalid('"jsonrpc" must be "2.0"', msg_id)
    if "method" in message:
        method = message["method"]
        if not isinstance(method, str) or not method:
            return Invalid('"method" must be a non-empty string', msg_id)
        params = message.get("params")
        if params is not None and not isinstance(params, dict | list):
            return Invalid('"params" must be an object or an array', msg_id)
        if "id" not in message:
            return Kind.NOTIFICATION
        if not is_request_id(raw_id):
            return Invalid('"id" must be an integer or a string')
        return Kind.REQUEST
    if "result" in message or "error" in message:
        if "id" not in message or (raw_id is not None and not is_request_id(raw_id)):
            return Invalid('a response needs an integer, string or null "id"')
        if "error" in message and not _valid_error(message["error"]):
            return Invalid('"error" must be an object with an integer "code" and a string "message"', msg_id)
        return Kind.RESPONSE
    return Invalid("neither a request, a notification nor a response", msg_id)


def _valid_error(error: object) -> bool:
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), int)
        and not isinstance(error.get("code"), bool)
        and isinstance(error.get("message"), str)
    )


def request(id: RequestId, method: str, params: JsonValue = None) -> JsonObject:
    message: JsonObject = {"jsonrpc": VERSION, "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: JsonValue = None) -> JsonObject:
    message: JsonObject = {"jsonrpc": VERSION, "method": method}
    if params is not None:
        message["params"] = params
    return message


def result_response(id: RequestId | None, result: JsonValue) -> JsonObject:
    return {"jsonrpc": VERSION, "id": id, "result": result}


def error_response(id: RequestId | None, error: dict[str, Any]) -> JsonObject:
    return {"jsonrpc": VERSION, "id": id, "error": error}
