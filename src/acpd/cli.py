"""CLI layer: the only place that reads argv, the environment and the config file."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("acpd: not implemented yet")
