"""Mock agent: JSON-RPC error codes and the error type its modules share.

Stdlib only and a leaf (the mock starts fast and imports nothing of acpd's layers); the codes are
the same as ``acpd.errors`` defines, checked by a test.
"""

from __future__ import annotations

from typing import Any, Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
RESOURCE_NOT_FOUND: Final = -32002


class RpcFault(Exception):
    """A JSON-RPC error: one the agent answers with, or one the client answered a request with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_wire(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error
