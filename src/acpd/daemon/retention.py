"""Daemon layer: retention: which sessions are old enough to go. Pure: ages and a cutoff.

``acpd gc`` and ``POST /v1/gc`` take an age (``30d``, ``12h``, ``90m``, ``3600s``, or seconds); the
``retention_days`` setting runs the same collection every hour. What is deleted is decided by the
session manager (``SessionManager.collect``), which never touches a session in use.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from acpd.errors import InvalidInput

UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGE_SECONDS: Final = 36_500 * 86_400
"""A hundred years: older than that is before any session was made (and past what a date can hold)."""
_AGE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def age_seconds(value: object) -> float:
    """``30d`` and the like (or a number: seconds) in seconds; 0: any session not in use.

    Raises:
        InvalidInput: anything else, or no age at all.
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        seconds = float(value)
    elif isinstance(value, str) and (found := _AGE.fullmatch(value.strip())) is not None:
        seconds = float(found[1]) * UNITS[found[2] or "s"]
    if seconds is None or not seconds <= MAX_AGE_SECONDS:
        raise InvalidInput('"olderThan" must be an age such as 30d, 12h, 90m or 3600s (or seconds), at most 100 years')
    return seconds


def cutoff(seconds: float, now: datetime | None = None) -> str:
    """The time ``seconds`` before ``now``, as the documents' times are written (compared as text)."""
    moment = (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
