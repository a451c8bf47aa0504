"""Daemon layer: ``acpd agents install``, pinned npm packages into acpd's agents directory.

Each preset gets a directory of its own holding a ``package.json`` with its pinned packages, and
``npm install`` runs there, so presets never share or upgrade each other's dependencies, and
removing one is deleting its directory. Reports progress (elapsed time, bytes on disk) to a
callback; turns npm's failures into ``InstallFailed`` with the reason a user can act on. Knows
nothing of HTTP or the CLI's display.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import anyio

from acpd.errors import InstallFailed
from acpd.presets import PRESETS, Preset, preset_dir, preset_program

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS: Final = 0.5
INSTALL_TIMEOUT_SECONDS: Final = 900.0
STDERR_TAIL_CHARS: Final = 2000
UNREACHABLE: Final = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network", re.I)
NPM_FLAGS: Final = (
    "--no-audit",
    "--no-fund",
    "--no-update-notifier",
    "--loglevel=warn",
    # npm's defaults retry an unreachable registry for many minutes.
    "--fetch-retries=2",
    "--fetch-retry-maxtimeout=10000",
)
REGISTRY_CONNECT_SECONDS: Final = 10.0
PROXY_VARIABLES: Final = (
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "npm_config_proxy",
    "npm_config_https_proxy",
)


@dataclass(frozen=True, slots=True)
class Progress:
    name: str
    elapsed_seconds: float
    bytes_on_disk: int
    done: bool = False


ProgressCallback = Callable[[Progress], None]


def preset_named(name: str) -> Preset:
    """Raises: InstallFailed: no such preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InstallFailed(f"no preset named {name!r}; installable agents: {', '.join(PRESETS)}") from None


async def install_preset(preset: Preset, agents_dir: Path, on_progress: ProgressCallback | None = None) -> Path:
    """Install the preset's pinned packages; return the installed program's path.

    Raises:
        InstallFailed: npm is missing, the registry cannot be reached, or npm failed otherwise.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise InstallFailed("npm is not on PATH: install Node.js 20 or later (it brings npm), then try again")
    await _check_registry(npm, preset)
    folder = preset_dir(preset, agents_dir)
    await anyio.to_thread.run_sync(_write_manifest, preset, folder)
    started = anyio.current_time()

    async def tick() -> None:
        if on_progress is not None:
            size = await anyio.to_thread.run_sync(_size, folder)  # a walk of hundreds of MB
            on_progress(Progress(preset.name, anyio.current_time() - started, size))

    try:
        stderr = await _run_npm(npm, folder, tick)
    except TimeoutError:
        raise _failure(preset, f"npm install did not finish within {INSTALL_TIMEOUT_SECONDS:.0f} s") from None
    program = preset_program(preset, agents_dir)
    if stderr is not None or not program.is_file():
        raise _failure(preset, stderr or f"npm finished but {program} is missing")
    if on_progress is not None:
        size = await anyio.to_thread.run_sync(_size, folder)
        on_progress(Progress(preset.name, anyio.current_time() - started, size, done=True))
    return program


async def _check_registry(npm: str, preset: Preset) -> None:
    """Fail at once, and say so, when npm's registry cannot be reached (npm itself would retry for
    minutes). Skipped behind a proxy, where only npm knows the way.

    Raises:
        InstallFailed: no TCP connection to the registry within ``REGISTRY_CONNECT_SECONDS``.
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return
    answer = await anyio.run_process([npm, "config", "get", "registry"], check=False)
    url = urlsplit(answer.stdout.decode().strip())
    if answer.returncode != 0 or not url.hostname:
        return  # npm will say what is wrong with its configuration
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with anyio.fail_after(REGISTRY_CONNECT_SECONDS):
            stream = await anyio.connect_tcp(url.hostname, port)
        await stream.aclose()
    except (OSError, TimeoutError) as exc:
        raise InstallFailed(
            f"cannot install {preset.name}: the npm registry ({url.geturl()}) cannot be reached "
            f"({str(exc) or 'timed out'}). Check the network, a proxy, or npm's `registry` setting, then try again",
            data={"packages": list(preset.packages)},
        ) from exc


def _write_manifest(preset: Preset, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    dependencies = dict(spec.rsplit("@", 1) for spec in preset.packages)
    manifest = {"name": f"acpd-agent-{preset.name}", "private": True, "dependencies": dependencies}
    (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")


async def _run_npm(npm: str, folder: Path, tick: Callable[[], Awaitable[None]]) -> str | None:
    """Run ``npm install`` in ``folder``; ``None`` on success, else npm's output tail."""
    env = {**os.environ, "npm_config_update_notifier": "false"}
    command = [npm, "install", *NPM_FLAGS]
    output = bytearray()
    with anyio.fail_after(INSTALL_TIMEOUT_SECONDS):
        async with await anyio.open_process(
            command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT
        ) as process:
            assert process.stdout is not None
            async with anyio.create_task_group() as tg:
                tg.start_soon(_ticker, tick)
                async for chunk in process.stdout:
                    output += chunk
                await process.wait()
                tg.cancel_scope.cancel()
    text = output.decode("utf-8", "replace")
    logger.debug("npm install in %s:\n%s", folder, text)
    return None if process.returncode == 0 else text[-STDERR_TAIL_CHARS:]


async def _ticker(tick: Callable[[], Awaitable[None]]) -> None:
    while True:
        await tick()
        await anyio.sleep(PROGRESS_INTERVAL_SECONDS)


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # npm moves files while we count
    return total


def _failure(preset: Preset, output: str) -> InstallFailed:
    tail = output.strip()
    if UNREACHABLE.search(tail):
        message = (
            f"cannot install {preset.name}: the npm registry cannot be reached. Check the network, "
            "a proxy, or npm's `registry` setting, then try again"
        )
    else:
        message = f"cannot install {preset.name}: npm install failed"
    return InstallFailed(message, data={"packages": list(preset.packages), "npmOutput": tail})
