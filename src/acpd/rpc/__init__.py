"""RPC layer: one bidirectional JSON-RPC peer used on both faces. Knows JSON-RPC, not ACP semantics."""

from acpd.rpc.peer import (
    Direction,
    InvalidHandler,
    JsonRpcPeer,
    NotificationHandler,
    RequestHandler,
    Tap,
)

__all__ = ["Direction", "InvalidHandler", "JsonRpcPeer", "NotificationHandler", "RequestHandler", "Tap"]
