"""Client layer: ready-made ``on_permission`` deciders for headless runs. Pure; no I/O.

A decider is given a pending :class:`~acpd.client.models.PermissionRequest` and returns
``"once"``, ``"always"``, ``"reject"``, an option id, or None to leave the request to someone else
(a person at ``acpd prompt``, another client, the daemon's timeout)::

    client.prompt(session.id, "fix the tests", on_permission=approve_reads)
"""

from __future__ import annotations

from typing import Final

from .models import PermissionRequest

READ_KINDS: Final = frozenset({"read", "search", "think", "fetch"})
"""Tool kinds that only look (the daemon's ``allow_reads`` policy uses the same ones)."""


def approve_all(request: PermissionRequest) -> str:
    """Allow every request, once."""
    return "once" if request.option_for("once") is not None else "reject"


def reject_all(request: PermissionRequest) -> str:
    """Reject every request."""
    return "reject"


def approve_reads(request: PermissionRequest) -> str:
    """Allow what only looks (read, search, think, fetch); reject the rest."""
    return approve_all(request) if is_read(request) else "reject"


def is_read(request: PermissionRequest) -> bool:
    return request.tool_kind in READ_KINDS
