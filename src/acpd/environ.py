"""Leaf module: whether the process environment changed, told cheaply. Imports only the stdlib.

What the daemon derives from the environment (the agents' resolved commands, the secrets a log
masks) is kept until the environment changes; every session create asks. Reading ``os.environ``
whole decodes every variable (tens of microseconds each time); its raw mapping, compared with a
copy, costs well under one: unchanged values are the very objects the copy holds.
"""

from __future__ import annotations

import os
from typing import Any

_seen: dict[Any, Any] = {}
_version = 0


def environ_version() -> int:
    """A number that changes whenever ``os.environ`` has changed since the last call (as seen
    through ``os.environ``: a bare ``os.putenv`` is invisible to it, as to ``os.environ`` itself)."""
    global _seen, _version
    raw = _raw_environ()
    if raw != _seen:
        _seen = dict(raw)
        _version += 1
    return _version


def _raw_environ() -> dict[Any, Any]:
    raw = getattr(os.environ, "_data", None)  # CPython's encoded mapping behind os.environ
    return raw if isinstance(raw, dict) else dict(os.environ)
