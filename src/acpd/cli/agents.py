"""CLI layer: ``acpd agents list`` and ``acpd agents install``.

``list`` reports what this machine's configuration gives (no daemon needed), or asks a running
daemon with ``--url``; ``install`` puts pinned npm packages into acpd's agents directory and shows
its progress on stderr. Only parses and prints: the facts and the installing live in the daemon
layer, so that ``GET /v1/agents`` tells the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from acpd.cli import output
from acpd.presets import PRESETS
from acpd.settings import DaemonConfig

if TYPE_CHECKING:
    from acpd.daemon.install import Progress  # imported lazily: `acpd mock-agent` must start fast

MEBIBYTE: Final = 1024 * 1024
Runner = Callable[[argparse.Namespace], int]


def add_agents_commands(agents: argparse.ArgumentParser, *, run_list: Runner, run_install: Runner) -> None:
    """The actions of ``acpd agents`` (its parser made by the caller)."""
    which = agents.add_subparsers(required=True, metavar="ACTION")
    listing = which.add_parser("list", help="agents: installed, version, credentials, why not usable")
    output.add_json_option(listing)
    listing.add_argument("--url", help="ask the daemon at this URL instead of reading the local configuration")
    listing.add_argument(
        "--token-file", help="file holding the bearer token for --url (default: ACPD_TOKEN, else the local one)"
    )
    _config_options(listing)
    listing.set_defaults(run=run_list)
    install = which.add_parser("install", help=f"install presets' pinned npm packages ({', '.join(PRESETS)})")
    install.add_argument("names", nargs="*", metavar="NAME", help="presets to install")
    install.add_argument("--all", action="store_true", help="install every preset")
    _config_options(install)
    install.set_defaults(run=run_install)


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default $XDG_CONFIG_HOME/acpd/config.toml if present)")
    parser.add_argument("--data-dir", help="data directory (default $XDG_DATA_HOME/acpd)")
    parser.add_argument("--agents-dir", help="where presets are installed (default <data dir>/agents)")
    parser.add_argument("--model-url", help="model API base URL for every preset (or ACPD_MODEL_URL)")


def install(args: argparse.Namespace, config: DaemonConfig) -> int:
    import anyio

    from acpd.daemon.install import install_preset, preset_named

    names = list(PRESETS) if args.all else args.names
    if not names:
        print("acpd agents install: name a preset, or --all", file=sys.stderr)
        return 2
    presets = [preset_named(name) for name in names]
    agents_dir = config.resolved_agents_dir()
    display = ProgressLine(sys.stderr)
    for preset in presets:
        print(f"installing {preset.name}: {' '.join(preset.packages)} into {agents_dir / preset.name}", file=sys.stderr)
        try:
            program = anyio.run(install_preset, preset, agents_dir, display.update)
        finally:
            display.finish()
        print(f"installed {preset.name}: {program}", file=sys.stderr)
    return 0


class ProgressLine:
    """One line rewritten in place on a terminal; a line every few seconds elsewhere (CI logs)."""

    LOG_EVERY_SECONDS: Final = 5.0

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._logged = 0.0

    def update(self, progress: Progress) -> None:
        text = f"  {progress.name}: {progress.elapsed_seconds:5.1f} s, {progress.bytes_on_disk / MEBIBYTE:7.1f} MiB"
        if progress.done:
            text += " done"
        if self._tty:
            self._stream.write("\r" + text)
        elif progress.done or progress.elapsed_seconds - self._logged >= self.LOG_EVERY_SECONDS:
            self._logged = progress.elapsed_seconds
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
