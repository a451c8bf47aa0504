"""The attached daemon's end of a client link: which of the owner's requests it asks its client."""

from __future__ import annotations

import pytest

from acpd.daemon import acp_links
from acpd.daemon.clients import AttachedClients
from acpd.errors import RpcError
from acpd.protocol.jsonio import JsonObject, JsonValue

pytestmark = pytest.mark.anyio

TERMINALS = ["terminal/create", "terminal/output", "terminal/wait_for_exit", "terminal/kill", "terminal/release"]


class Client:
    def __init__(self, capabilities: JsonObject) -> None:
        self.client_capabilities = capabilities
        self.link_id = "acp-test"
        self.asked: list[str] = []

    async def relay(self, method: str, params: JsonObject) -> JsonValue:
        self.asked.append(method)
        return {"asked": method}


async def test_every_fs_and_terminal_request_the_client_advertised_is_asked_of_it() -> None:
    client = Client({"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True})
    relay = acp_links.relay_to(client)
    for method in ["fs/read_text_file", "fs/write_text_file", *TERMINALS]:
        assert await relay(method, {"sessionId": "s"}, {}) == {"asked": method}
    assert client.asked == ["fs/read_text_file", "fs/write_text_file", *TERMINALS]
    assert acp_links.wants_link(client)


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("terminal/kill", {"sessionId": "s"}, -32601),  # not advertised
        ("fs/write_text_file", {"sessionId": "s"}, -32601),  # not advertised
        ("session/prompt", {"sessionId": "s"}, -32601),  # never relayed
        ("fs/read_text_file", ["not", "an", "object"], -32602),
    ],
)
async def test_what_the_client_did_not_advertise_or_bad_params_get_a_json_rpc_error(
    method: str, params: JsonValue, code: int
) -> None:
    client = Client({"fs": {"readTextFile": True}})
    with pytest.raises(RpcError) as raised:
        await acp_links.relay_to(client)(method, params, {})
    assert raised.value.code == code
    assert client.asked == []


def test_a_client_that_advertised_nothing_is_not_linked() -> None:
    assert not acp_links.wants_link(Client({}))
    assert not acp_links.wants_link(Client({"fs": {"readTextFile": False}, "terminal": False}))


def test_the_link_url_is_under_the_owners_address() -> None:
    assert acp_links.link_url("http://127.0.0.1:4520", "a b") == "ws://127.0.0.1:4520/v1/sessions/a%20b/link"
    assert acp_links.link_url("https://acpd.example/base/", "s1") == "wss://acpd.example/base/v1/sessions/s1/link"


def test_a_links_end_leaves_the_client_attached_since_under_its_id() -> None:
    # the link's daemon took the session over and its client attached there directly
    clients = AttachedClients()
    linked, local = Client({"terminal": True}), Client({"terminal": True})
    clients.attach(linked)
    clients.attach(local)
    clients.detach_link(linked)
    assert clients.route("terminal/create", {}, None) is local
    clients.detach_link(local)
    assert not clients.is_attached(local.link_id)
