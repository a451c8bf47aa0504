"""``acpd doctor`` as a person runs it: a real process over a home of the test's own, each finding
with its fix, exit 1 only when something is broken, and nothing it looks at changed."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from acpd.testing.daemon import running_daemon

from .helpers import run_acpd

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def doctor(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    """The exit code, and the findings by check."""
    done = await run_acpd("doctor", "--json", *args, home=home, env=env)
    assert done.stderr == "", done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0)
    return done.returncode, {f["check"]: f for f in report["findings"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_fresh_home_passes_with_every_check_reported(tmp_path: Path) -> None:
    code, found = await doctor(tmp_path, "--port", str(free_port()))
    assert code == 0
    assert {"config", "node", "npm", "bubblewrap", "agent mock", "agent claude", "data dir", "port", "database"} <= set(
        found
    )
    assert found["agent mock"]["status"] == "ok"
    assert "does not exist yet" in found["data dir"]["finding"] and "does not exist yet" in found["database"]["finding"]
    assert all(f["fix"] for f in found.values() if f["status"] != "ok")


async def test_the_table_has_a_header_and_a_fix_column(tmp_path: Path) -> None:
    done = await run_acpd("doctor", "--port", str(free_port()), home=tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].split() == ["STATUS", "CHECK", "FINDING", "FIX"]


async def test_a_missing_tool_is_a_warning_that_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    code, found = await doctor(tmp_path, "--port", str(free_port()), env={"PATH": str(empty)})
    assert code == 0
    assert found["node"]["status"] == "warn" and "install Node.js" in found["node"]["fix"]
    assert found["bubblewrap"]["status"] == "warn" and "apt install bubblewrap" in found["bubblewrap"]["fix"]


async def test_a_usable_agent_says_where_it_runs_from_and_where_its_credentials_come_from(tmp_path: Path) -> None:
    code, found = await doctor(tmp_path, "--port", str(free_port()), env={"ANTHROPIC_API_KEY": "sk-doctor-test"})
    assert code == 0
    native = found["agent claude-native"]
    assert native["status"] == "ok" and native["finding"].endswith("credentials from $ANTHROPIC_API_KEY")
    assert "sk-doctor-test" not in json.dumps(found)


async def test_a_bad_config_fails_and_the_other_checks_still_run(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[daemon]\nprot = 1\n")
    code, found = await doctor(tmp_path, "--config", str(config))
    assert code == 1
    assert found["config"]["status"] == "fail" and "prot: unknown key" in found["config"]["finding"]
    assert found["agent mock"]["status"] == "ok"


async def test_an_unusable_default_agent_fails_with_the_daemons_own_reason(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\ndefault_agent = "mine"\n[agents.mine]\ncommand = "no-such-agent-here"\n')
    code, found = await doctor(tmp_path, "--config", str(config), "--port", str(free_port()))
    assert code == 1
    assert found["agent mine"]["status"] == "fail"
    assert "command 'no-such-agent-here' not found on PATH" in found["agent mine"]["fix"]


async def test_a_data_dir_open_to_others_warns_and_a_readable_token_fails(tmp_path: Path) -> None:
    data = tmp_path / "data" / "acpd"
    data.mkdir(parents=True)
    data.chmod(0o755)
    (data / "token").write_text("secret\n")
    (data / "token").chmod(0o644)
    code, found = await doctor(tmp_path, "--port", str(free_port()))
    assert code == 1
    assert found["data dir"]["status"] == "warn" and found["data dir"]["fix"] == f"chmod 700 {data}"
    assert found["token"]["status"] == "fail" and found["token"]["fix"] == f"chmod 600 {data / 'token'}"


async def test_a_port_held_by_another_program_fails_and_one_held_by_acpd_passes(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        code, found = await doctor(tmp_path, "--port", str(other.getsockname()[1]))
    assert code == 1
    assert found["port"]["status"] == "fail" and "--port" in found["port"]["fix"]
    async with running_daemon(tmp_path) as daemon:
        code, found = await doctor(tmp_path, "--port", daemon.url.rsplit(":", 1)[1])
    assert found["port"] == {**found["port"], "status": "ok"} and "running acpd" in found["port"]["finding"]


async def test_the_database_is_checked_read_only_and_a_corrupt_one_fails(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        await http.post("/v1/sessions", json={"agent": "mock", "cwd": str(tmp_path)})
    db = tmp_path / "data" / "acpd" / "acpd.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, found = await doctor(tmp_path, "--port", str(free_port()))
    assert code == 0 and found["database"]["status"] == "ok" and "quick_check" in found["database"]["finding"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, not at all" * 200)
    code, found = await doctor(tmp_path, "--db", str(garbage), "--port", str(free_port()))
    assert code == 1
    assert found["database"]["status"] == "fail" and "move" in found["database"]["fix"]
