"""The tool-call audit over REST: rows that equal what the event log says, filters, CSV, stats."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.daemon.manager import SessionManager

from .helpers import all_events, new_session, wait_for_frame

pytestmark = pytest.mark.anyio


async def run_with_permission(client: httpx.AsyncClient, manager: SessionManager, session_id: str, text: str) -> None:
    """Run a prompt whose one permission request the client answers "once"."""
    async with anyio.create_task_group() as tg:

        async def turn() -> None:
            response = await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
            assert response.status_code == 200, response.text

        tg.start_soon(turn)
        with anyio.fail_after(10):
            await wait_for_frame(manager, session_id, "session/request_permission")
            pending = (await client.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
            await client.post(f"/v1/sessions/{session_id}/permissions/{pending[0]['id']}", json={"reply": "once"})


def from_the_log(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The audit recomputed from a session's events: each tool call's last kind, title and status,
    whether permission was asked, and the chosen option."""
    calls: dict[str, dict[str, Any]] = {}
    asked: dict[Any, str] = {}
    for event in events:
        payload = event["payload"]
        update = payload.get("params", {}).get("update", {})
        if update.get("sessionUpdate") in ("tool_call", "tool_call_update"):
            call = calls.setdefault(update["toolCallId"], {"asked": False, "reply": None})
            call.update({k: update[k] for k in ("kind", "title", "status") if k in update})
        elif payload.get("method") == "session/request_permission":
            asked[payload["id"]] = payload["params"]["toolCall"]["toolCallId"]
            calls[asked[payload["id"]]]["asked"] = True
        elif event["sender"] == "client" and payload.get("id") in asked and "result" in payload:
            calls[asked[payload["id"]]]["reply"] = payload["result"]["outcome"].get("optionId")
    return calls


async def test_the_audit_rows_equal_what_the_event_logs_say(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    sessions = [(await new_session(client, workdir))["id"] for _ in range(2)]
    for session_id in sessions:
        await run_with_permission(client, manager, session_id, "tool read Look\npermission edit\ntool search Find")
    rows = (await client.get("/v1/audit/tool-calls")).json()["items"]
    for session_id in sessions:
        expected = from_the_log(await all_events(client, session_id))
        audited = {
            r["toolCallId"]: {
                "kind": r["kind"],
                "title": r["title"],
                "status": r["status"],
                "asked": r["permissionAsked"],
                "reply": r["reply"],
            }
            for r in rows
            if r["sessionId"] == session_id
        }
        assert audited == expected
    edits = (await client.get("/v1/audit/tool-calls", params={"kind": "edit"})).json()["items"]
    assert [(r["outcome"], r["decidedBy"], r["agent"]) for r in edits] == [("allow_once", "client", "mock")] * 2


async def test_the_csv_export_opens_with_pythons_csv_module_and_holds_the_same_rows(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    await run_with_permission(client, manager, session_id, 'tool read Say "hi", then go\npermission edit')
    rows = (await client.get("/v1/audit/tool-calls")).json()["items"]
    response = await client.get("/v1/audit/tool-calls", params={"format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text, newline="")))
    assert [(t["toolCallId"], t["title"], t["permissionAsked"]) for t in table] == [
        (r["toolCallId"], r["title"], "true" if r["permissionAsked"] else "false") for r in rows
    ]
    assert response.text.endswith("\r\n")


async def test_the_stats_count_what_the_rows_hold(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session_id = (await new_session(client, workdir))["id"]
    await run_with_permission(client, manager, session_id, "tool read A\npermission edit\ntool read B")
    stats = (await client.get("/v1/audit/stats", params={"session": session_id})).json()
    assert stats["total"] == {"toolCalls": 3}
    assert stats["kind"] == {"read": 2, "edit": 1}
    assert stats["decidedBy"] == {"none": 2, "client": 1}


@pytest.mark.parametrize(
    "params",
    [{"since": "yesterday"}, {"cursor": "nope"}, {"limit": "0"}, {"format": "xml"}, {"sessionId": "x"}],
)
async def test_bad_audit_queries_are_clear_problems(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/v1/audit/tool-calls", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_turns_and_usage_equal_what_the_turns_answers_say(client: httpx.AsyncClient, workdir: Path) -> None:
    session_id = (await new_session(client, workdir, project="alpha"))["id"]
    answers = []
    for text in ("usage 10 20 0.01\ntool read A", "usage 5 7 0.03", "text no usage"):
        with anyio.fail_after(10):
            answers.append((await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})).json())
    turns = (await client.get(f"/v1/sessions/{session_id}/turns")).json()["items"]
    assert [(t["turn"], t["stopReason"], t["steps"], t["firstSeq"], t["lastSeq"]) for t in turns] == [
        (a["turn"], a["stopReason"], a["steps"], a["firstSeq"], a["lastSeq"]) for a in answers
    ]
    for turn, answer in zip(turns, answers, strict=True):
        tokens = {
            k: v for k, v in (answer["usage"] or {}).items() if k in ("inputTokens", "outputTokens", "totalTokens")
        }
        assert {k: v for k, v in turn["usage"].items() if k != "cost"} == tokens
    assert [t["usage"].get("cost", {}).get("amount") for t in turns] == [
        0.01,
        0.02,
        None,
    ]  # the agent's totals: .01, .03
    assert turns[0]["prompt"] == "usage 10 20 0.01 tool read A"
    report = (await client.get("/v1/usage", params={"groupBy": "project"})).json()
    assert report["items"] == [
        {"key": "alpha", "turns": 3, "inputTokens": 15, "outputTokens": 27, "totalTokens": 42,
         "cost": {"amount": 0.03, "currency": "USD"}}
    ]  # fmt: skip
    assert (await client.get("/v1/sessions/nobody/turns")).status_code == 404
    assert (await client.get("/v1/usage", params={"groupBy": "color"})).status_code == 400
