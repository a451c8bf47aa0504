"""End-to-end helper: reading an SSE response as events (the daemon itself comes from acpd.testing.daemon)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from acpd.protocol import jsonio


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield jsonio.loads(line[6:])
