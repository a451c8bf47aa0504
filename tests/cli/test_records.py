"""The record commands, run as real ``acpd`` processes against a real daemon: export and import,
fork, turns, rename, archive, rm, search, audit (table, stats, CSV) and usage."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from acpd.testing.daemon import running_daemon
from tests.daemon.helpers import new_session

from .helpers import against, one_line, run_acpd

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_a_session_exports_imports_forks_and_is_renamed_archived_and_removed(
    tmp_path: Path, workdir: Path
) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session = await new_session(http, workdir)
        await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "text about kumquats\nusage 3 4 0.5"})
        url = against(daemon)
        out = tmp_path / "out.jsonl"
        exported = await run_acpd(
            "sessions", "export", session["id"], "-F", "jsonl", "-o", str(out), *url, home=tmp_path
        )
        markdown = await run_acpd("sessions", "export", session["id"], "--format", "markdown", *url, home=tmp_path)
        imported = await run_acpd("sessions", "import", str(out), "--id", "copy", "--json", *url, home=tmp_path)
        forked = await run_acpd("sessions", "fork", session["id"], "--new-id", "branch", "--json", *url, home=tmp_path)
        turns = await run_acpd("sessions", "turns", session["id"], *url, home=tmp_path)
        renamed = await run_acpd("sessions", "rename", "copy", "The copy", "--json", *url, home=tmp_path)
        archived = await run_acpd("sessions", "archive", "branch", *url, home=tmp_path)
        listed = await run_acpd("sessions", "list", "--json", *url, home=tmp_path)
        found = await run_acpd("sessions", "list", "-q", "kumquats", "--archived", "any", "--json", *url, home=tmp_path)
        removed = await run_acpd("sessions", "rm", "copy", *url, home=tmp_path)
        gone = await run_acpd("sessions", "show", "copy", *url, home=tmp_path)
    for done in (exported, markdown, imported, forked, turns, renamed, archived, listed, found, removed):
        assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text().splitlines()[0])["session"]["id"] == session["id"]
    assert [name for name in os.listdir(tmp_path) if name.startswith("out.")] == ["out.jsonl"]  # no .partial
    assert markdown.stdout.startswith("# text about kumquats\n") and "## Turn 1" in markdown.stdout
    assert (json.loads(imported.stdout)["id"], json.loads(forked.stdout)["id"]) == ("copy", "branch")
    header, row = turns.stdout.splitlines()
    assert header.split() == ["TURN", "STOP", "STEPS", "TOKENS", "COST", "STARTED", "PROMPT"]
    assert row.split()[:6] == ["1", "end_turn", "0", "7", "0.5000", "USD"]
    assert json.loads(renamed.stdout)["title"] == "The copy"
    assert {s["id"] for s in json.loads(listed.stdout)["items"]} == {session["id"], "copy"}  # the fork is archived
    assert {s["id"] for s in json.loads(found.stdout)["items"]} == {session["id"], "copy", "branch"}
    assert gone.returncode == 1 and "no session with id 'copy'" in one_line(gone.stderr)


async def test_a_session_moved_to_a_second_daemon_goes_on_there_with_its_history(tmp_path: Path, workdir: Path) -> None:
    (first_home := tmp_path / "a").mkdir()
    (second_home := tmp_path / "b").mkdir()
    moved = tmp_path / "moved.jsonl"
    async with running_daemon(first_home) as first, first.client() as http:
        session = await new_session(http, workdir)
        await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "text the secret is kumquat"})
        exported = await run_acpd(
            "sessions", "export", session["id"], "-F", "jsonl", "-o", str(moved), *against(first), home=first_home
        )
        before = (await http.get(f"/v1/sessions/{session['id']}/events")).json()["items"]
    async with running_daemon(second_home) as second, second.client() as http:
        imported = await run_acpd("sessions", "import", str(moved), "--json", *against(second), home=second_home)
        after = (await http.get(f"/v1/sessions/{session['id']}/events")).json()["items"]
        answer = (await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "context"})).json()
    assert (exported.returncode, imported.returncode) == (0, 0), exported.stderr + imported.stderr
    assert json.loads(imported.stdout)["id"] == session["id"]
    assert after == before  # the same records, seqs and times
    assert (answer["turn"], answer["stopReason"]) == (2, "end_turn")
    assert "the secret is kumquat" in answer["text"]  # its agent on the second daemon has the conversation


async def test_audit_and_usage_print_tables_stats_csv_and_json(tmp_path: Path, workdir: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session = await new_session(http, workdir, project="alpha")
        await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "tool read A\ntool edit B\nusage 1 2"})
        url = against(daemon)
        table = await run_acpd("audit", *url, home=tmp_path)
        edits = await run_acpd("audit", "--kind", "edit", "--json", *url, home=tmp_path)
        stats = await run_acpd("audit", "--stats", "--json", *url, home=tmp_path)
        as_csv = await run_acpd("audit", "--csv", *url, home=tmp_path)
        usage = await run_acpd("usage", "-g", "project", *url, home=tmp_path)
        bad = await run_acpd("audit", "--since", "someday", *url, home=tmp_path)
    for done in (table, edits, stats, as_csv, usage):
        assert done.returncode == 0, done.stderr
    assert table.stdout.splitlines()[0].split() == [
        "STARTED",
        "SESSION",
        "AGENT",
        "KIND",
        "STATUS",
        "OUTCOME",
        "BY",
        "TITLE",
    ]
    assert len(table.stdout.splitlines()) == 3
    assert [r["title"] for r in json.loads(edits.stdout)["items"]] == ["B"]
    assert json.loads(stats.stdout)["kind"] == {"read": 1, "edit": 1}
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout, newline="")))
    assert [r["kind"] for r in rows] == ["read", "edit"]
    header, alpha, total = usage.stdout.splitlines()
    assert header.split() == ["KEY", "TURNS", "INPUT", "OUTPUT", "CACHED", "TOTAL", "COST"]
    assert alpha.split()[:3] == ["alpha", "1", "1"] and total.split()[0] == "(total)"
    assert bad.returncode == 1 and "RFC 3339" in one_line(bad.stderr)


async def test_gc_deletes_old_sessions_and_vacuum_gives_the_space_back(tmp_path: Path, workdir: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session = await new_session(http, workdir)
        await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "chunks 20000 200"})
        url = against(daemon)
        dry = await run_acpd("gc", "--older-than", "0s", "--dry-run", *url, home=tmp_path)
        done = await run_acpd("gc", "--older-than", "0s", "--vacuum", "--json", *url, home=tmp_path)
        left = await run_acpd("sessions", "list", "--json", "--archived", "any", *url, home=tmp_path)
        refused = await run_acpd("gc", "--older-than", "later", *url, home=tmp_path)
    assert dry.returncode == 0 and dry.stdout.splitlines()[0] == "would delete 1 session(s); kept 0 in use"
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["deleted"] == [session["id"]] and result["reclaimedBytes"] > 4_000_000
    assert json.loads(left.stdout)["items"] == []
    assert refused.returncode == 1 and "olderThan" in one_line(refused.stderr)
