"""The session records over ACP: export, import, turns, rename and archive, audit and usage as
``_acpd/`` extension methods that answer what REST answers; ``session/list`` filters; and the
prompt capabilities the face promises for its agent."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.errors import RpcError
from acpd.protocol import jsonio

from .acp_client import AcpTestClient, acp_client
from .helpers import all_events, new_session

pytestmark = pytest.mark.anyio

INVALID_PARAMS = -32602


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    """The daemon tests' config plus a mock agent that takes text only."""
    text_only = AgentConfig(
        command=sys.executable,
        args=("-m", "acpd.testing.mock_agent", "--text-only", "--state-dir", str(tmp_path / "mock-text")),
    )
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"mock-text": text_only})


async def a_session_with_a_permission(acp: AcpTestClient, workdir: Path) -> str:
    """A session over ACP with a turn of tool calls, one of them asked and allowed by the client."""
    session_id = str((await acp.new_session(str(workdir)))["sessionId"])
    await acp.prompt(session_id, "tool read Look\npermission edit\ntool search Find\ntext the reply says quince")
    return session_id


async def test_the_records_over_acp_answer_what_rest_answers(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(20):
            init = await acp.initialize()
            session_id = await a_session_with_a_permission(acp, workdir)
            exports = {
                fmt: await acp.request("_acpd/session/export", {"sessionId": session_id, "format": fmt})
                for fmt in ("json", "jsonl", "markdown")
            }
            turns = await acp.request("_acpd/session/turns", {"sessionId": session_id})
            calls = await acp.request("_acpd/audit/tool_calls", {"session": session_id})
            stats = await acp.request("_acpd/audit/stats", {"session": session_id})
            usage = await acp.request("_acpd/usage", {"groupBy": "agent"})
    assert "_acpd/session/export" in init["_meta"]["acpd"]["methods"]
    for fmt, answer in exports.items():
        rest = await client.get(f"/v1/sessions/{session_id}/export", params={"format": fmt})
        assert (answer["format"], answer["content"]) == (fmt, rest.text)
        assert rest.headers["content-type"].startswith(answer["mimeType"].split(";")[0])
    assert "permission" in exports["markdown"]["content"].lower()
    assert turns == (await client.get(f"/v1/sessions/{session_id}/turns")).json()
    rest_calls = (await client.get("/v1/audit/tool-calls", params={"session": session_id})).json()["items"]
    assert calls["items"] == rest_calls
    assert [c["permissionAsked"] for c in calls["items"]].count(True) == 1
    assert stats == (await client.get("/v1/audit/stats", params={"session": session_id})).json()
    assert usage == (await client.get("/v1/usage", params={"groupBy": "agent"})).json()


async def test_an_export_read_a_page_at_a_time_over_acp_holds_every_record_once(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(20):
            await acp.initialize()
            session_id = await a_session_with_a_permission(acp, workdir)
            pages: list[dict[str, Any]] = []
            params: dict[str, Any] = {"sessionId": session_id, "format": "jsonl", "afterSeq": 0, "limit": 3}
            while True:
                pages.append(await acp.request("_acpd/session/export", params))
                if "nextAfterSeq" not in pages[-1]:
                    break
                params["afterSeq"] = pages[-1]["nextAfterSeq"]
    records = [record for page in pages for record in page["records"]]
    assert len(pages) > 2
    assert records == await all_events(client, session_id)
    assert pages[0]["session"]["session"]["id"] == session_id


async def test_a_session_imported_over_acp_has_the_history_and_continues(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(20):
            await acp.initialize()
            source = await a_session_with_a_permission(acp, workdir)
            exported = await acp.request("_acpd/session/export", {"sessionId": source, "format": "jsonl"})
            made = await acp.request("_acpd/session/import", {"content": exported["content"], "id": "moved"})
            await acp.request("session/resume", {"sessionId": "moved", "cwd": str(workdir)})
            answer = await acp.prompt("moved", "context")
    assert (made["session"]["id"], made["session"]["turns"]) == ("moved", 1)
    assert answer["stopReason"] == "end_turn"
    assert "quince" in acp.texts("moved")  # the agent got the imported conversation
    original = await all_events(client, source)
    assert len(await all_events(client, "moved")) > len(original)


async def test_a_garbage_import_over_acp_is_refused_and_leaves_nothing(
    manager: SessionManager, client: httpx.AsyncClient
) -> None:
    before = (await client.get("/v1/sessions", params={"archived": "any"})).json()["items"]
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            for params in ({"content": "not an export\n{}"}, {"content": 7}, {"content": "", "extra": 1}):
                with pytest.raises(RpcError) as refused:
                    await acp.request("_acpd/session/import", params)
                assert refused.value.code == INVALID_PARAMS
    assert (await client.get("/v1/sessions", params={"archived": "any"})).json()["items"] == before


async def test_rename_and_archive_over_acp_and_session_list_hides_archived_unless_asked(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(20):
            await acp.initialize()
            kept = await a_session_with_a_permission(acp, workdir)
            hidden = str((await acp.new_session(str(workdir)))["sessionId"])
            renamed = await acp.request("_acpd/session/update", {"sessionId": kept, "title": "Quince audit"})
            await acp.request("_acpd/session/update", {"sessionId": hidden, "archived": True})

            async def listed(**meta: Any) -> list[str]:
                params: dict[str, Any] = {"_meta": {"acpd": meta}} if meta else {}
                return [s["sessionId"] for s in (await acp.request("session/list", params))["sessions"]]

            default, archived, both = await listed(), await listed(archived=True), await listed(archived="any")
            found = await acp.request("session/list", {"_meta": {"acpd": {"q": "quince"}}})
    assert renamed["session"]["title"] == "Quince audit"
    assert (default, archived, sorted(both)) == ([kept], [hidden], sorted([kept, hidden]))
    assert [s["sessionId"] for s in found["sessions"]] == [kept]
    assert (await client.get(f"/v1/sessions/{kept}")).json()["title"] == "Quince audit"


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("_acpd/session/export", {"sessionId": "SID", "format": "pdf"}),
        ("_acpd/session/export", {"sessionId": "SID", "format": "markdown", "afterSeq": 0}),
        ("_acpd/session/export", {"sessionId": "SID", "afterSeq": 10**9}),
        ("_acpd/session/export", {"sessionId": "SID", "limit": 0}),
        ("_acpd/session/export", {"sessionId": 5}),
        ("_acpd/session/update", {"sessionId": "SID", "archived": "yes"}),
        ("_acpd/session/update", {"sessionId": "SID", "colour": "red"}),
        ("_acpd/audit/tool_calls", {"since": "yesterday"}),
        ("_acpd/audit/tool_calls", {"cursor": "garbage!"}),
        ("_acpd/audit/stats", {"kind": 3}),
        ("_acpd/usage", {"groupBy": "planet"}),
        ("session/list", {"_meta": {"acpd": {"archived": "sometimes"}}}),
        ("session/list", {"_meta": {"acpd": {"q": '((("'}}}),
    ],
)
async def test_bad_record_requests_over_acp_are_invalid_params_and_the_session_goes_on(
    manager: SessionManager, workdir: Path, method: str, params: dict[str, Any]
) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            session_id = await acp.start(str(workdir))
            request = jsonio.loads(jsonio.dumps_str(params).replace('"SID"', jsonio.dumps_str(session_id)))
            with pytest.raises(RpcError) as refused:
                await acp.request(method, request)
            answer = await acp.prompt(session_id, "text still here")
    assert refused.value.code == INVALID_PARAMS, refused.value
    assert answer["stopReason"] == "end_turn"


async def test_records_of_an_unknown_session_over_acp_are_not_found(manager: SessionManager) -> None:
    async with acp_client(manager) as acp:
        with anyio.fail_after(10):
            await acp.initialize()
            for method in ("_acpd/session/export", "_acpd/session/turns", "_acpd/session/update"):
                with pytest.raises(RpcError) as refused:
                    await acp.request(method, {"sessionId": "nobody"})
                assert refused.value.code == -32002 and "nobody" in str(refused.value)


async def test_the_face_promises_the_prompt_blocks_its_agent_said_it_takes(
    manager: SessionManager, client: httpx.AsyncClient, workdir: Path
) -> None:
    async def promised(**connection: Any) -> dict[str, bool]:
        async with acp_client(manager, **connection) as acp:
            with anyio.fail_after(10):
                return dict((await acp.initialize())["agentCapabilities"]["promptCapabilities"])

    nothing_known = await promised()
    await new_session(client, workdir)  # the mock agent starts, and says what it takes
    await new_session(client, workdir, agent="mock-text")
    assert nothing_known == {"image": False, "audio": False, "embeddedContext": False}
    assert await promised() == {"image": True, "audio": True, "embeddedContext": True}
    assert await promised(default_agent="mock-text") == {"image": False, "audio": False, "embeddedContext": False}
