"""Adapters layer: what counts as a secret in an environment, and keeping it out of sight.

DESIGN §7: secrets (API keys in the environment) never enter the event log. Agents print their
configuration on errors, and commands print whatever they are given, so secrets are redacted from
what is kept and withheld from what does not need them. Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

SECRET_NAME: Final = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
SECRET_MIN_CHARS: Final = 8
"""Shorter values are not redacted: replacing "1" or "true" everywhere would garble the text."""


def redact(text: str, env: Mapping[str, str]) -> str:
    """Replace the values of secret-looking variables of ``env`` (keys, tokens, passwords) in ``text``."""
    for name, value in env.items():
        if len(value) >= SECRET_MIN_CHARS and SECRET_NAME.search(name) and value in text:
            text = text.replace(value, "***")
    return text


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without its secret-looking variables."""
    return {name: value for name, value in env.items() if not SECRET_NAME.search(name)}
