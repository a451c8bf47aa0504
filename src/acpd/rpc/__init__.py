"""RPC layer: one bidirectional JSON-RPC peer used on both faces. Knows JSON-RPC, not ACP semantics."""
