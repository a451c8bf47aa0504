"""The official ACP v1 JSON schema (shipped by the pinned npm @agentclientprotocol/sdk that
scripts/setup-clients installs), as validators for single definitions and for every frame an ACP
client receives from an agent."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, Final

from jsonschema import Draft202012Validator

from acpd.protocol import jsonio
from tests.e2e.clients import require_clients

AGENT_REQUESTS: Final = {
    "session/request_permission": "RequestPermissionRequest",
    "fs/read_text_file": "ReadTextFileRequest",
    "fs/write_text_file": "WriteTextFileRequest",
    "terminal/create": "CreateTerminalRequest",
    "terminal/output": "TerminalOutputRequest",
    "terminal/wait_for_exit": "WaitForTerminalExitRequest",
    "terminal/kill": "KillTerminalRequest",
    "terminal/release": "ReleaseTerminalRequest",
}
"""What an agent may ask of its client, and the params' definition."""
AGENT_NOTIFICATIONS: Final = {"session/update": "SessionNotification", "$/cancel_request": "CancelRequestNotification"}
RESPONSES: Final = {
    "initialize": "InitializeResponse",
    "authenticate": "AuthenticateResponse",
    "logout": "LogoutResponse",
    "session/new": "NewSessionResponse",
    "session/load": "LoadSessionResponse",
    "session/resume": "ResumeSessionResponse",
    "session/list": "ListSessionsResponse",
    "session/close": "CloseSessionResponse",
    "session/delete": "DeleteSessionResponse",
    "session/prompt": "PromptResponse",
    "session/set_mode": "SetSessionModeResponse",
    "session/set_config_option": "SetSessionConfigOptionResponse",
}
"""The result's definition for each client request an agent answers (``session/set_model`` left
the v1 schema: its answer is only checked to be an object)."""


@functools.cache
def _schema() -> dict[str, Any]:
    path = require_clients() / "node_modules" / "@agentclientprotocol" / "sdk" / "schema" / "v1" / "schema.json"
    schema: dict[str, Any] = jsonio.loads(path.read_bytes())
    return schema


@functools.cache
def validator(definition: str) -> Draft202012Validator:
    """A validator for ``$defs/<definition>`` (e.g. ``SessionNotification``)."""
    schema = _schema()
    return Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})


def problems(definition: str, value: Any) -> list[str]:
    """Why ``value`` is not a valid ``definition`` (empty when it is)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(definition).iter_errors(value)]


def agent_frame_problems(frame: Mapping[str, Any], asked: Mapping[Any, str]) -> list[str]:
    """Why one frame an agent sent its client is not valid ACP v1: a request or notification by its
    method (extension methods, ``_``-prefixed, need only object params), a response by the method of
    the client request it answers (``asked``: request id → method), an error as a JSON-RPC error."""
    if frame.get("jsonrpc") != "2.0":
        return ['"jsonrpc" must be "2.0"']
    method = frame.get("method")
    if isinstance(method, str):
        return _call_problems(method, frame)
    if "id" not in frame or ("result" in frame) == ("error" in frame):
        return ["neither a request, a notification, nor a response"]
    if "error" in frame:
        return problems("Error", frame["error"])
    definition = RESPONSES.get(asked.get(frame["id"], ""))
    if definition is None:
        return [] if isinstance(frame["result"], dict) else ["a result must be an object"]
    return problems(definition, frame["result"])


def _call_problems(method: str, frame: Mapping[str, Any]) -> list[str]:
    is_request = "id" in frame
    if is_request and problems("RequestId", frame["id"]):
        return [f"bad request id {frame['id']!r}"]
    if method.startswith("_"):
        params = frame.get("params")
        return [] if params is None or isinstance(params, dict) else ["extension params must be an object"]
    definition = (AGENT_REQUESTS if is_request else AGENT_NOTIFICATIONS).get(method)
    if definition is None:
        return [f"{method!r} is not an ACP agent-to-client {'request' if is_request else 'notification'}"]
    return problems(definition, frame.get("params"))


def conversation_problems(sent: Iterable[Mapping[str, Any]], received: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every frame of ``received`` that is not valid ACP v1, and why; ``sent`` are the client's own
    frames (their request ids say what each response answers)."""
    asked = {frame["id"]: frame["method"] for frame in sent if "id" in frame and isinstance(frame.get("method"), str)}
    found: list[str] = []
    for frame in received:
        found.extend(f"{why} in {jsonio.dumps_str(dict(frame))[:400]}" for why in agent_frame_problems(frame, asked))
    return found
