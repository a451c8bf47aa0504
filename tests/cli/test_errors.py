"""Ordinary mistakes, made through a real ``acpd`` process: one line on stderr naming what is wrong
(and what to do), a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from acpd.testing.daemon import daemon_env, running_daemon
from tests.daemon.helpers import new_session

from .helpers import against, one_line, run_acpd

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[daemon]\nprot = 4520\n", "[daemon] prot: unknown key (got 4520)"),
        ("[deamon]\nport = 4520\n", "unknown section [deamon]"),
        ('[daemon]\nport = "x"\n', "[daemon] port: must be an integer (got 'x')"),
        ("[daemon]\nport = 70000\n", "[daemon] port: must be at most 65535 (got 70000)"),
        ("[policy]\nmaxStep = 3\n", "[policy] maxStep: unknown key (got 3)"),
        ('[agents.mine]\ncomand = "x"\n', "[agents.mine] comand: unknown key (got 'x')"),
        ("[daemon\n", "cannot read config file"),
    ],
)
async def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key(tmp_path: Path, toml: str, said: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    done = await run_acpd("serve", "--config", str(config), home=tmp_path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("acpd: ") and str(config) in line and said in line


async def test_the_default_config_file_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "config" / "acpd").mkdir(parents=True)
    (tmp_path / "config" / "acpd" / "config.toml").write_text("[daemon]\nhots = 'x'\n")
    done = await run_acpd("token", home=tmp_path)
    assert done.returncode == 1
    assert "config.toml: [daemon] hots: unknown key" in one_line(done.stderr)


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_port_in_use_is_one_line_saying_which_and_what_to_do(tmp_path: Path, held_port: int) -> None:
    done = await run_acpd("serve", "--port", str(held_port), "--log-level", "warning", home=tmp_path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"cannot listen on 127.0.0.1:{held_port}" in line and "--port" in line


async def test_an_unreachable_daemon_is_one_line_with_its_url_and_how_to_start_one(
    tmp_path: Path, held_port: int
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    for command in (["sessions", "list"], ["sessions", "show", "x"], ["agents", "list"]):
        done = await run_acpd(*command, "--url", url, home=tmp_path)
        assert done.returncode == 1, command
        line = one_line(done.stderr)
        assert url in line and "acpd serve" in line, line


async def test_a_daemon_that_refuses_is_one_line_with_its_answer(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        done = await run_acpd("sessions", "show", "nope", *against(daemon), home=tmp_path)
    assert done.returncode == 1
    assert "404" in one_line(done.stderr)


@pytest.mark.parametrize("follow", [False, True])
async def test_a_closed_pipe_ends_quietly_with_the_sigpipe_code(tmp_path: Path, workdir: Path, follow: bool) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session = await new_session(http, workdir)
        await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "text hello"})
        read, write = os.pipe()
        os.close(read)  # the reader has gone, as `| head` has once it has its lines
        try:
            extra = ["--follow"] if follow else []
            done = await run_acpd(
                "sessions", "events", session["id"], *extra, *against(daemon), home=tmp_path, stdout=write
            )
        finally:
            os.close(write)
    assert done.returncode == 141
    assert done.stderr == ""


async def test_events_piped_into_head_end_without_a_traceback(tmp_path: Path, workdir: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        session = await new_session(http, workdir)
        for _ in range(10):  # more than a pipe holds: acpd is still writing when head leaves
            await http.post(f"/v1/sessions/{session['id']}/prompt", json={"prompt": "text " + "word " * 4000})
        acpd = shlex.join(
            [sys.executable, "-m", "acpd", "sessions", "events", session["id"], "--json", *against(daemon)]
        )
        with anyio.fail_after(30):
            done = await anyio.run_process(
                ["bash", "-c", f'{acpd} | head -n 1; exit "${{PIPESTATUS[0]}}"'], env=daemon_env(tmp_path), check=False
            )
    assert done.returncode == 141
    assert done.stderr == b""
    assert done.stdout.startswith(b'{"seq":1,')


def test_a_connection_lost_mid_answer_is_a_line_naming_the_daemon_and_a_bug_keeps_its_traceback() -> None:
    import httpx

    from acpd.cli.errors import CLOSED_PIPE, INTERRUPTED, REFUSED, exit_code, refusals

    lost = httpx.RemoteProtocolError("peer closed", request=httpx.Request("GET", "http://127.0.0.1:4520/v1/x"))
    assert refusals(lost) == [
        "cannot reach the acpd daemon at http://127.0.0.1:4520 (peer closed); start one with `acpd serve`"
    ]
    assert exit_code(lost) == REFUSED
    assert exit_code(BrokenPipeError()) == CLOSED_PIPE and exit_code(KeyboardInterrupt()) == INTERRUPTED
    assert exit_code(ValueError("a bug")) is None and refusals(ExceptionGroup("g", [ValueError("x")])) is None
