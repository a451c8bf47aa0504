"""Session create on a warm real agent: what acpd adds on top of the agent's own ``session/new``.

For each installed preset (``scripts/setup-agents``), against acpd's mock model server:

- acpd: ``POST /v1/sessions`` to a daemon whose shared process of that agent (and its spare) is
  already running (a first create started it, and is not counted), ``--creates`` times;
- the agent alone: the same agent process, started as the daemon starts it (``acpd.adapters.
  acp_pool``, same command, env, home and files), answering ``session/new`` on its stdin, timed in
  this process from the request's write to its answer's read, ``--creates`` times.

acpd's share is the difference of the medians (noisy: the agents' own times vary by tens of ms),
and, steadier, the daemon's CPU per create (utime + stime, 10 ms ticks). The two run one after
the other per agent, on the same machine; quote the load. Run it inside ``unshare -n`` so
nothing leaves the machine:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/agent_creates.py --creates 20'

Codex without bubblewrap runs with its sandbox off (``danger-full-access``), as the agent tests do.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).parents[1]
AGENTS_DIR = ROOT / ".cache" / "agents"

from _proc import cpu_seconds  # noqa: E402

from acpd.adapters.acp_pool import AgentPool  # noqa: E402
from acpd.cli import load_config  # noqa: E402
from acpd.presets import PRESETS, preset_program  # noqa: E402
from acpd.protocol import methods  # noqa: E402
from acpd.testing.daemon import daemon_env, running_daemon  # noqa: E402
from acpd.testing.model_server import serve_mock_model  # noqa: E402

CODEX_WITHOUT_SANDBOX = '[agents.codex]\nargs = ["-c", \'sandbox_mode="danger-full-access"\']\n'


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(len(ordered) * q) - 1)] * 1000

    return f"median {statistics.median(ordered) * 1000:.2f} ms, p90 {at(0.9):.2f}, p99 {at(0.99):.2f}"


async def through_acpd(home: Path, model_url: str, config: Path, agent: str, creates: int) -> tuple[list[float], float]:
    """Each create's round trip, and the daemon's CPU per create."""
    args = ("--agents-dir", str(AGENTS_DIR), "--model-url", model_url, "--db", ":memory:", "--config", str(config))
    async with (
        running_daemon(home, *args, env={"TMPDIR": str(home / "tmp")}) as daemon,
        daemon.client(timeout=120) as http,
    ):
        body = {"agent": agent, "cwd": str(home / "work")}
        (await http.post("/v1/sessions", json=body)).raise_for_status()  # starts the process and its spare
        await anyio.sleep(3.0)  # the spare finishes starting
        samples = []
        cpu0 = cpu_seconds(daemon.process.pid)
        for _ in range(creates):
            t0 = time.perf_counter()
            response = await http.post("/v1/sessions", json=body)
            samples.append(time.perf_counter() - t0)
            response.raise_for_status()
        return samples, (cpu_seconds(daemon.process.pid) - cpu0) / creates


async def agent_alone(home: Path, model_url: str, config: Path, agent: str, creates: int) -> list[float]:
    """The agent's own ``session/new``, on a process started as the daemon starts it."""
    saved = dict(os.environ)
    os.environ.update({**daemon_env(home), "TMPDIR": str(home / "tmp")})  # the daemon's environment
    try:
        # the configuration the daemon reads from the same flags and file
        flags = argparse.Namespace(config=str(config), agents_dir=str(AGENTS_DIR), model_url=model_url, db=":memory:")
        settings = load_config(flags, dict(os.environ))
        resolved = settings.all_agents()[agent]
        async with anyio.create_task_group() as tg:
            pool = AgentPool(tg)
            connection = await pool.acquire(agent, resolved, cwd=str(home / "work"), mcp_servers=[], dedicated=True)
            peer = connection.peer
            assert peer is not None
            samples = []
            for _ in range(creates):
                t0 = time.perf_counter()
                await peer.request(methods.SESSION_NEW, {"cwd": str(home / "work"), "mcpServers": []})
                samples.append(time.perf_counter() - t0)
            connection.unreserve()
            await pool.aclose()
        return samples
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def main(agents: list[str], creates: int) -> None:
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    async with serve_mock_model() as model:
        for agent in agents:
            with tempfile.TemporaryDirectory() as scratch:
                home = Path(scratch)
                (home / "tmp").mkdir()
                (home / "work").mkdir()
                config = home / "acpd.toml"
                config.write_text("" if shutil.which("bwrap") else CODEX_WITHOUT_SANDBOX)
                acpd, cpu = await through_acpd(home, model.url, config, agent, creates)
                alone = await agent_alone(home, model.url, config, agent, creates)
                added = (statistics.median(acpd) - statistics.median(alone)) * 1000
                print(f"{agent:<9} acpd POST /v1/sessions: {summary(acpd)}, daemon CPU {cpu * 1000:.2f} ms each")
                print(f"{'':<9} the agent's own session/new: {summary(alone)}; acpd adds {added:.2f} ms (medians)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=20)
    parser.add_argument("--agents", default=",".join(PRESETS))
    options = parser.parse_args()
    installed = [a for a in options.agents.split(",") if preset_program(PRESETS[a], AGENTS_DIR).is_file()]
    sys.exit(anyio.run(main, installed, options.creates))
