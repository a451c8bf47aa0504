"""Protocol layer: PURE wire vocabulary (stdlib, pydantic, orjson). No I/O, no anyio, no acpd layer above."""
