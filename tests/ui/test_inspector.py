"""The web inspector at /ui, end to end in a real headless Chromium against a real daemon and the
mock agent: what a user does (create, prompt, answer, switch), what a flaky network or a reload
does to a live turn, a session of 100,000 events, and an agent's hostile output."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from acpd.daemon.install import PROXY_VARIABLES
from acpd.presets import PRESETS
from acpd.testing.daemon import Daemon

from .browser import SECOND_AGENT, Inspector, inspector, inspector_daemon, open_browser

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with inspector_daemon(tmp_path / "home") as running:
        yield running


@pytest.fixture
async def ui(daemon: Daemon, tmp_path: Path) -> AsyncIterator[Inspector]:
    async with open_browser() as browser, inspector(browser, daemon, tmp_path / "screenshots") as view:
        yield view
        assert view.errors == []
        assert await view.violations() == []


async def new_session(daemon: Daemon, cwd: Path) -> str:
    async with daemon.client() as http:
        created = await http.post("/v1/sessions", json={"agent": "mock", "cwd": str(cwd)})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


async def prompt(daemon: Daemon, session_id: str, text: str) -> dict[str, object]:
    async with daemon.client(timeout=60) as http:
        answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_a_user_creates_a_session_sends_a_prompt_and_answers_permission_cards(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    page = ui.page
    await page.fill("#new-cwd", str(workdir))
    await page.fill("#new-title", "first look")
    await page.click("#create")
    await page.wait_for_selector("#prompt")

    await page.fill(
        "#prompt", "chunks 300\nplan 2\ntool read Read it\nusage 1200 300 0.02\npermission\npermission execute"
    )
    await page.click("#send")
    assert await ui.wait("window.acpdUi.model.stats.chunks === 300 && window.acpdUi.model.pending.size === 1")
    await page.wait_for_selector("#conversation [data-perm]")
    await page.wait_for_selector("#pending [data-perm]")
    assert "c299" in await page.inner_text("#conversation")
    assert await page.inner_text("#plan") == "◐ Step 1medium\n☐ Step 2medium"
    await ui.shot("permission-card")

    # answered here: the card goes from the conversation and the side panel
    await page.click("#pending [data-perm] button[data-option=allow]")
    await ui.wait("window.acpdUi.model.pending.size === 1 && window.acpdUi.model.perms.size === 2")
    # answered by another client: it goes all the same
    session_id = await ui.value("window.acpdUi.model.session.id")
    async with daemon.client() as http:
        pending = (await http.get(f"/v1/sessions/{session_id}/permissions")).json()["items"]
        assert len(pending) == 1
        await http.post(f"/v1/sessions/{session_id}/permissions/{pending[0]['id']}", json={"reply": "reject"})
    await ui.wait("window.acpdUi.model.status === 'idle'")
    await page.wait_for_selector("[data-perm]", state="detached")
    await ui.wait("document.querySelectorAll('.perm.settled').length === 2")
    settled = await page.locator(".perm.settled").all_inner_texts()
    assert [text.rsplit(": ", 1)[1] for text in settled] == ["allow by client", "reject by client"]
    assert "1.5k tokens" in await page.inner_text("#usage")
    assert await page.get_attribute("#context", "value") == "1500"
    await page.wait_for_selector("#turns li:has-text('end_turn · 3 tools · 1.5k tok · $0.0200')")

    async with page.expect_download() as download:
        await page.click("[data-export=markdown]")
    exported = await anyio.Path(await (await download.value).path()).read_text()
    assert "first look" in exported
    assert "c299" in exported

    # a fork: a new session holding this one's history
    await page.click("#fork")
    await ui.wait(f"window.acpdUi && window.acpdUi.model.session.id !== '{session_id}'")
    await page.wait_for_selector(".note:has-text('forked from')")
    assert "c299" in await page.inner_text("#conversation")

    # the list shows it; the token was asked once and is kept for the tab, never put in a URL
    await page.reload()
    await page.click("a.back")
    row = page.locator(f"tr[data-session='{session_id}']")
    await row.wait_for()
    assert "first look" in await row.inner_text()
    assert await page.is_hidden("#token-dialog")
    assert daemon.token is not None
    assert daemon.token not in page.url


async def test_the_sessions_list_badges_follow_status_and_the_filters_narrow_it(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    asking = await new_session(daemon, workdir)
    other = await new_session(daemon, workdir)
    async with daemon.client() as http:
        await http.patch(f"/v1/sessions/{other}", json={"title": "needle in a haystack", "project": "hay"})
    page = ui.page
    await ui.open("#/")
    async with daemon.client() as http:
        async with http.stream(
            "POST",
            f"/v1/sessions/{asking}/prompt",
            json={"prompt": "permission"},
            headers={"Accept": "text/event-stream"},
        ) as stream:
            assert stream.status_code == 200
        await page.wait_for_selector(f"tr[data-session='{asking}'] .status-awaiting_permission")
        await ui.shot("sessions-list")
        pending = (await http.get(f"/v1/sessions/{asking}/permissions")).json()["items"]
        await http.post(f"/v1/sessions/{asking}/permissions/{pending[0]['id']}", json={"reply": "once"})
    await page.wait_for_selector(f"tr[data-session='{asking}'] .status-idle")

    await page.fill("#search", "needle")
    await page.wait_for_selector(f"tr[data-session='{asking}']", state="detached")
    assert await page.locator("#sessions tr").count() == 1
    await page.fill("#search", "")
    await page.fill("#filter-project", "hay")
    await page.wait_for_selector(f"tr[data-session='{asking}']", state="detached")
    await page.fill("#filter-project", "")
    await page.select_option("#filter-archived", "true")
    await page.wait_for_selector("#sessions tr", state="detached")


async def test_switching_agent_and_model_in_the_pickers_changes_the_running_session(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    session_id = await new_session(daemon, workdir)
    await ui.open(f"#/s/{session_id}")
    page = ui.page

    await page.select_option("#pick-model", "mock-large")
    await ui.wait("window.acpdUi.model.session.model === 'mock-large'")
    await page.select_option("#pick-thoughtLevel", "high")
    await ui.wait("window.acpdUi.model.session.thoughtLevel === 'high'")
    assert await settings(daemon, session_id) == ("mock", "mock-large", "high")

    await page.select_option("#pick-agent", SECOND_AGENT)
    await ui.wait(f"window.acpdUi.model.session.agent === '{SECOND_AGENT}'")
    await page.wait_for_selector(f".note:has-text('agent started: {SECOND_AGENT}')")
    # the new agent's own options: the pickers are drawn again from them
    await page.select_option("#pick-model", "mock-large")
    await ui.wait("window.acpdUi.model.session.model === 'mock-large'")
    assert await settings(daemon, session_id) == (SECOND_AGENT, "mock-large", None)
    assert await page.input_value("#pick-agent") == SECOND_AGENT

    # the new agent takes the next prompt; cancel stops it
    await page.fill("#prompt", "text on the new agent\nsleep 30")
    await page.click("#send")
    await page.wait_for_selector(".msg.agent:has-text('on the new agent')")
    await page.fill("#prompt", "text queued behind it")
    await page.click("#send")
    await page.wait_for_selector("#queued:has-text('1 queued')")
    await page.click("#cancel")
    await page.wait_for_selector(".turn-end:has-text('turn 1 ended: cancelled')")
    await page.wait_for_selector(".turn-end:has-text('turn 2 ended: end_turn')")
    await page.wait_for_selector("#queued", state="hidden")


async def settings(daemon: Daemon, session_id: str) -> tuple[str, str | None, str | None]:
    async with daemon.client() as http:
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
    return session["agent"], session["model"], session["thoughtLevel"]


async def test_a_reload_and_a_dropped_stream_in_a_10000_chunk_turn_show_every_chunk_exactly_once(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    session_id = await new_session(daemon, workdir)
    await ui.open(f"#/s/{session_id}")
    page = ui.page
    # 20 x 500 chunks, a pause between: a turn long enough to reload in and drop the stream in
    await page.fill("#prompt", "\n".join(["chunks 500", "sleep 0.15"] * 20))
    await page.click("#send")
    await ui.wait("window.acpdUi.model.stats.chunks >= 1500")

    await page.reload()
    await ui.wait("window.acpdUi && window.acpdUi.model.stats.chunks >= 5000")
    assert await ui.value("window.acpdUi.model.turnsEnded") == 0  # still in the middle of the turn
    await page.evaluate("window.acpdUi.view.dropStream()")
    await ui.wait("window.acpdUi.model.turnsEnded === 1")

    stats = await ui.value("window.acpdUi.model.stats")
    assert stats["chunks"] == 10_000
    assert stats["gaps"] == 0
    rendered = await ui.value("window.acpdUi.view.renderedText('agent')")
    expected = "".join(f"c{i} " for i in range(500)) * 20
    assert " ".join(rendered).split() == expected.split()
    assert await ui.value("window.acpdUi.model.textOf('agent')") == expected
    assert await ui.value("window.acpdUi.model.lastSeq") == await ui.value("window.acpdUi.model.frames.length")
    assert "c499" in await page.inner_text("#conversation")


async def test_after_a_daemon_restart_the_page_resumes_its_stream_without_a_duplicate_or_a_gap(
    tmp_path: Path, workdir: Path
) -> None:
    home = tmp_path / "home"
    port = ("--port", str(free_port()))  # the same address after the restart
    async with open_browser() as browser, AsyncExitStack() as first:
        daemon = await first.enter_async_context(inspector_daemon(home, *port))
        session_id = await new_session(daemon, workdir)
        async with inspector(browser, daemon, tmp_path / "screenshots") as ui:
            await ui.open(f"#/s/{session_id}")
            await ui.page.fill("#prompt", "chunks 300")
            await ui.page.click("#send")
            await ui.wait("window.acpdUi.model.turnsEnded === 1")

            await first.aclose()
            await ui.wait("document.getElementById('conn').textContent === 'reconnecting'")
            async with inspector_daemon(home, *port) as second:
                await ui.wait("document.getElementById('conn').textContent === 'live'")
                await prompt(second, session_id, "chunks 200 4")
                await ui.wait("window.acpdUi.model.turnsEnded === 2")
                async with second.client() as http:
                    logged = (await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 10000})).json()
                await ui.wait(f"window.acpdUi.model.lastSeq >= {logged['items'][-1]['seq']}")
                shown = await ui.value(f"window.acpdUi.model.frames.slice(0, {len(logged['items'])})")
                assert await ui.value("window.acpdUi.model.stats.duplicates + window.acpdUi.model.stats.gaps") == 0
            assert ui.errors == []

    assert [record["seq"] for record in shown] == [record["seq"] for record in logged["items"]]
    assert shown == logged["items"]
    assert [record["turn"] for record in shown if "stopReason" in record["payload"].get("result", {})] == [1, 2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_session_of_100000_events_opens_and_scrolls_with_few_rows_in_the_dom(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    session_id = await new_session(daemon, workdir)
    for _ in range(4):
        await prompt(daemon, session_id, "think planning\nchunks 24996 8\ntool edit Edit\nplan 3")
    await ui.open(f"#/s/{session_id}")
    page = ui.page

    started = time.monotonic()
    await ui.wait("window.acpdUi && window.acpdUi.view.loaded && window.acpdUi.model.lastSeq >= 100000")
    loaded = time.monotonic() - started
    await page.wait_for_selector(".turn-end:has-text('turn 4 ended')")
    timing = await ui.value("window.acpdUi.model.timing")
    assert loaded < 15, timing
    assert await page.locator("#conversation [data-row]").count() < 100

    await page.evaluate("window.acpdUi.view.list.scrollToIndex(0)")
    await page.wait_for_selector("#conversation [data-row='0']")
    await page.evaluate("window.acpdUi.view.list.scrollToIndex(Math.floor(window.acpdUi.model.rows.length / 2))")
    await page.wait_for_selector("#conversation .msg.agent")
    await ui.shot("100000-events")

    await page.click("#raw-toggle")
    last = await ui.value("window.acpdUi.model.lastSeq")
    await page.evaluate("window.acpdUi.view.list.scrollToEnd()")
    await page.wait_for_selector(f".frame .seq:text-is('{last}')")
    assert await page.locator(".frame").count() < 200


async def test_hostile_markdown_and_html_from_the_agent_are_shown_as_text_and_run_nothing(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    session_id = await new_session(daemon, workdir)
    await prompt(daemon, session_id, "hostile")
    await ui.open(f"#/s/{session_id}")
    page = ui.page
    await page.wait_for_selector(".turn-end")
    await page.click(".thought summary")

    conversation = page.locator("#conversation")
    text = await conversation.inner_text()
    assert "<script>window.__acpdPwned=1</script>" in text
    assert '<img src="x" onerror="window.__acpdPwned=1">' in text
    assert "[a javascript link](javascript:window.__acpdPwned=1)" in text
    for tag in ("script", "img", "svg", "iframe", "b", "object", "embed"):
        assert await page.locator(f"main {tag}").count() == 0, tag
    hrefs = await page.eval_on_selector_all("main a[href]", "links => links.map(a => a.getAttribute('href'))")
    assert all(href.startswith(("#", "http:", "https:", "mailto:")) for href in hrefs), hrefs
    assert await page.evaluate("window.__acpdPwned") is None
    assert await page.locator(".diff .add").inner_text() == '+<img src="x" onerror="window.__acpdPwned=1">'
    await page.click(".diff-mode")
    assert await page.locator(".diff .split td.del").inner_text() == "<script>window.__acpdPwned=1</script>"
    assert await page.locator(".diff .split td.add").inner_text() == '<img src="x" onerror="window.__acpdPwned=1">'
    await ui.shot("hostile")


async def test_a_session_deleted_elsewhere_says_so_on_its_open_page(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    session_id = await new_session(daemon, workdir)
    await ui.open(f"#/s/{session_id}")
    await ui.wait("document.getElementById('conn').textContent === 'live'")

    async with daemon.client() as http:
        assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
    await ui.page.wait_for_selector(".error:has-text('no longer exists')")


async def test_the_tool_call_and_agents_views_list_calls_and_say_which_agent_is_usable_and_why_not(
    ui: Inspector, daemon: Daemon, workdir: Path
) -> None:
    session_id = await new_session(daemon, workdir)
    await prompt(daemon, session_id, "tool read Read the notes\ntool execute Run the tests")
    await ui.open("#/audit")
    page = ui.page
    await page.wait_for_selector("#audit tr:has-text('Read the notes') .status-completed")
    assert await page.locator("#audit tr").count() == 2
    await page.select_option("#audit-kind", "execute")
    await page.wait_for_selector("#audit tr:has-text('Read the notes')", state="detached")
    assert "Run the tests" in await page.inner_text("#audit")

    await ui.open("#/")
    await page.wait_for_selector("#usage-summary:has-text('mock')")
    await ui.open("#/agents")
    await page.wait_for_selector("tr[data-agent='mock']")

    assert "usable" in await page.inner_text("tr[data-agent='mock']")
    claude = await page.inner_text("tr[data-agent='claude']")
    assert "not usable" in claude
    assert "acpd agents install claude" in claude


async def test_an_agent_is_installed_from_the_agents_view_with_its_progress(tmp_path: Path) -> None:
    program = PRESETS["gemini"].program
    npm = tmp_path / "bin" / "npm"
    with socket.socket() as registry:
        registry.bind(("127.0.0.1", 0))
        registry.listen()
        url = f"http://127.0.0.1:{registry.getsockname()[1]}/"
        install = f'mkdir -p "$(dirname {program})" && echo ok > {program} && chmod +x {program}'
        stand_in(npm, f'if [ "$1" = config ]; then echo {url}; exit 0; fi\n{install}\n')
        env = {"PATH": f"{npm.parent}{os.pathsep}{os.environ['PATH']}", **dict.fromkeys(PROXY_VARIABLES, "")}
        async with (
            inspector_daemon(tmp_path / "home", env=env) as daemon,
            open_browser() as browser,
            inspector(browser, daemon, tmp_path / "screenshots") as ui,
        ):
            await ui.open("#/agents")
            page = ui.page
            await page.click("[data-agent-install=gemini]")
            await page.wait_for_selector("tr[data-agent='gemini'] td:nth-child(3):text-is('yes')")
            assert await page.locator("[data-agent-install=gemini]").count() == 0
            assert ui.errors == []


def stand_in(path: Path, script: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
