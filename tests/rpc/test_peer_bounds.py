"""A peer that is sent requests faster than it answers them holds a bounded number of them."""

from __future__ import annotations

import anyio
import pytest

from acpd.errors import INTERNAL_ERROR
from acpd.protocol.jsonio import JsonObject, JsonValue

from .test_peer import request, serve

pytestmark = pytest.mark.anyio


async def test_requests_past_the_limit_in_flight_are_answered_with_an_error_at_once() -> None:
    release = anyio.Event()

    async def slow(method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        await release.wait()
        return "served"

    async with serve(on_request=slow, max_incoming=3) as (_, wire):
        for n in range(5):
            await wire.send(request(n))
        refused = [await wire.receive() for _ in range(2)]
        release.set()
        served = [await wire.receive() for _ in range(3)]
    assert [a["id"] for a in refused] == [3, 4]
    assert all(a["error"]["code"] == INTERNAL_ERROR for a in refused)
    assert "more than 3 requests in flight" in refused[0]["error"]["data"]["detail"]
    assert sorted(a["id"] for a in served) == [0, 1, 2]
    assert all(a["result"] == "served" for a in served)
