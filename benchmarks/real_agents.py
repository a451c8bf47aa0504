"""Real agents through acpd, against the mock model server: what a user waits for.

For each installed preset (``scripts/setup-agents``): session create (spawn the agent under its
keeper, initialize, session/new), a prompt whose model calls the shell tool once (auto-allowed)
and then replies, a second prompt in the same session, and the session's close (the whole tree
stopped). Run it inside ``unshare -n`` to be sure nothing leaves the machine.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/real_agents.py --runs 3'

Compare with shared/reference/real-agents-offline.md §7, measured driving each agent directly.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from agent_creates import CODEX_WITHOUT_SANDBOX  # noqa: E402  (this script's directory is on the path)
from tests.agents.scenarios import SCENARIOS  # noqa: E402

from acpd.presets import PRESETS, preset_program  # noqa: E402
from acpd.testing.daemon import running_daemon  # noqa: E402
from acpd.testing.model_server import serve_mock_model  # noqa: E402

AGENTS_DIR = ROOT / ".cache" / "agents"


async def one_run(http: httpx.AsyncClient, agent: str, cwd: str) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    created = await http.post("/v1/sessions", json={"agent": agent, "cwd": cwd, "policy": {"permissions": "allow"}})
    created.raise_for_status()
    session_id = created.json()["id"]
    times["create"] = time.perf_counter() - t0
    for name, text in (("tool prompt", SCENARIOS[agent].run("echo hi")), ("text prompt", "mock:text=hello")):
        t0 = time.perf_counter()
        answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})
        assert answer.json().get("stopReason") == "end_turn", answer.text
        times[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (await http.delete(f"/v1/sessions/{session_id}")).raise_for_status()
    times["close"] = time.perf_counter() - t0
    return times


async def main(agents: list[str], runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        (home / "tmp").mkdir()
        async with serve_mock_model() as model:
            config = home / "acpd.toml"
            config.write_text("" if shutil.which("bwrap") else CODEX_WITHOUT_SANDBOX)
            args = (
                "--agents-dir",
                str(AGENTS_DIR),
                "--model-url",
                model.url,
                "--db",
                ":memory:",
                "--config",
                str(config),
            )
            async with (
                running_daemon(home, *args, env={"TMPDIR": str(home / "tmp")}) as daemon,
                daemon.client(timeout=120) as http,
            ):
                for agent in agents:
                    samples = [await one_run(http, agent, str(home)) for _ in range(runs)]
                    cells = ", ".join(
                        f"{key} {statistics.median(s[key] for s in samples) * 1000:.0f} ms" for key in samples[0]
                    )
                    print(f"{agent:<9} (median of {runs}): {cells}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agents", default=",".join(PRESETS))
    options = parser.parse_args()
    installed = [a for a in options.agents.split(",") if preset_program(PRESETS[a], AGENTS_DIR).is_file()]
    anyio.run(main, installed, options.runs)
