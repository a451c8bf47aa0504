"""Every command that lists or shows prints a table with a header row, and with ``--json`` what a
program reads: one JSON document, or JSON lines for events. Run as real ``acpd`` processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acpd.cli.output import describe_event, table
from acpd.testing.daemon import running_daemon
from tests.daemon.helpers import new_session

from .helpers import against, run_acpd


def test_a_table_has_a_header_and_columns_as_wide_as_their_widest_cell() -> None:
    lines = table(
        [{"a": "x", "b": None}, {"a": "longer", "b": True}], [("A", lambda r: r["a"]), ("B", lambda r: r["b"])]
    )
    assert lines == ["A       B", "x       -", "longer  yes"]


def test_an_event_is_described_by_its_kind_and_a_short_detail() -> None:
    chunk = {
        "method": "session/update",
        "params": {"update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "hi"}}},
    }
    assert describe_event(chunk) == ("agent_message_chunk", "hi")
    assert describe_event({"id": "turn-1", "result": {"stopReason": "end_turn"}}) == (
        "result",
        '{"stopReason":"end_turn"}',
    )
    assert describe_event({"id": "turn-1", "error": {"code": 1, "message": "boom"}}) == ("error", "boom")


@pytest.mark.anyio
@pytest.mark.e2e
async def test_sessions_list_show_and_events_print_tables_and_json(tmp_path: Path, workdir: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session = await new_session(http, workdir)
        await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "text hello"})
        url = against(daemon)
        listed = await run_acpd("sessions", "list", *url, home=tmp_path)
        listed_json = await run_acpd("sessions", "list", "--json", *url, home=tmp_path)
        shown = await run_acpd("sessions", "show", session["id"], *url, home=tmp_path)
        shown_json = await run_acpd("sessions", "show", session["id"], "--json", *url, home=tmp_path)
        events = await run_acpd("sessions", "events", session["id"], *url, home=tmp_path)
        events_json = await run_acpd("sessions", "events", session["id"], "--json", *url, home=tmp_path)
    for done in (listed, listed_json, shown, shown_json, events, events_json):
        assert done.returncode == 0, done.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "AGENT", "STATUS", "TURNS", "CREATED", "TITLE"]
    assert row.split()[:4] == [session["id"], "mock", "idle", "1"]
    assert [item["id"] for item in json.loads(listed_json.stdout)["items"]] == [session["id"]]
    assert shown.stdout.splitlines()[0].split() == ["FIELD", "VALUE"]
    assert f"ID             {session['id']}" in shown.stdout and str(workdir) in shown.stdout
    assert json.loads(shown_json.stdout)["id"] == session["id"]
    lines = events.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "FROM", "TURN", "WHAT", "DETAIL"]
    assert any(" agent_message_chunk " in line and line.endswith("hello") for line in lines)
    records = [json.loads(line) for line in events_json.stdout.splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)) and len(records) == len(lines) - 1


@pytest.mark.anyio
@pytest.mark.e2e
async def test_agents_list_prints_a_table_and_json(tmp_path: Path) -> None:
    listed = await run_acpd("agents", "list", home=tmp_path)
    listed_json = await run_acpd("agents", "list", "--json", home=tmp_path)
    assert listed.stdout.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "VERSION",
        "SOURCE",
        "CREDENTIALS",
        "USABLE",
        "WHY",
        "NOT",
    ]
    assert any(line.split()[:2] == ["mock", "acp"] and " yes " in line for line in listed.stdout.splitlines())
    assert {a["name"] for a in json.loads(listed_json.stdout)["items"]} >= {"mock", "claude-native"}
