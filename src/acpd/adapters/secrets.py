"""Adapters layer: what counts as a secret, and keeping it out of sight.

DESIGN §7: secrets never enter the event log, logs, or the commands the daemon runs. A secret is
known by its variable's name (``*_API_KEY``, ``*_TOKEN``…) or by the shape of its value: a URL with
a password (``postgres://u:pw@h/db``), a provider's key prefix (``sk-``, ``ghp_``, ``AKIA``…), a JWT,
a PEM private key. Agents print their configuration on errors and commands print whatever they are
given, so secrets are redacted from what is kept and withheld from what does not need them. Pure;
no I/O.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Final

SECRET_NAME: Final = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(?:^|_)PAT(?:$|_)", re.I)
SECRET_MIN_CHARS: Final = 8
"""Shorter values are not redacted: replacing "1" or "true" everywhere would garble the text."""
MASK: Final = "***"

# No pattern may match a quote or a backslash: scrubbing JSON text must leave valid JSON.
_SHAPES: Final = (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[^\"]*?-----END [A-Z ]*PRIVATE KEY-----|[^\"]*)",
    r"sk-[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic (sk-ant-…), DeepSeek…
    r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"xox[abposre]-[A-Za-z0-9-]{10,}",  # Slack
    r"A(?:KIA|SIA)[A-Z0-9]{16}",  # AWS access key ids
    r"AIza[A-Za-z0-9_-]{30,}",  # Google API keys
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"npm_[A-Za-z0-9]{30,}",
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    r"(?:[Bb]earer|BEARER)\s+[A-Za-z0-9._~+/-]{16,}=*",
)


@functools.cache
def secret_shape() -> re.Pattern[str]:
    """Every shape in ``_SHAPES`` as one regex, compiled at the first text that holds a clue of one
    (``SHAPE_CLUES``): most processes' texts never do, and compiling it is a few ms of a start."""
    return re.compile("|".join(f"(?:{shape})" for shape in _SHAPES))


_SHAPE_CLUES: Final = (
    ("-", "(?<=sk-)|(?<=glpat-)|(?<=xox[abposre]-)|(?<=PRIVATE KEY-)"),
    ("_", "(?<=k_live_)|(?<=k_test_)|(?<=gh[pousr]_)|(?<=github_pat_)|(?<=hf_)|(?<=npm_)"),
    ("A", "KIA|SIA|Iza"),
    ("J", "(?<=eyJ)"),
    ("B", "(?=earer|EARER)"),
    ("b", "(?=earer)"),
)
"""A part every ``secret_shape()`` match contains, found by its rarest character (then checked
around it): text without any needs no redaction. The event log scrubs every record, and nearly
all text holds none of them."""
LONG_TEXT: Final = 4096
"""Characters from which ``Clues`` looks for each first character on its own."""


class Clues:
    """Whether a text holds one of some patterns, each a plain first character and a regex after it.

    A short text takes one regex of them all, whose engine skips to the next place one of the first
    characters occurs. On a long text that skip is slow (~5 ms a MiB), and looking for one plain
    character is fast (``in``, a ``memchr``): each first character is looked for first, and only
    the patterns of those that occur are run, each a fast scan for its own first character.
    Each regex is compiled at its first use: a log filter built at start may never need them.
    """

    def __init__(self, clues: Sequence[tuple[str, str]]) -> None:
        self._clues = tuple(clues)

    @functools.cached_property
    def _groups(self) -> list[tuple[str, re.Pattern[str]]]:
        groups: dict[str, list[str]] = {}
        for first, rest in self._clues:
            groups.setdefault(first, []).append(rest)
        return [(first, re.compile(f"{re.escape(first)}(?:{'|'.join(rests)})")) for first, rests in groups.items()]

    @functools.cached_property
    def _all(self) -> re.Pattern[str]:
        return re.compile("|".join(f"{re.escape(first)}(?:{rest})" for first, rest in self._clues))

    def search(self, text: str, start: int = 0) -> bool:
        """True when one of the patterns matches ``text`` from ``start`` on."""
        if len(text) - start < LONG_TEXT:
            return self._all.search(text, start) is not None
        return any(first in text and pattern.search(text, start) for first, pattern in self._groups)


SHAPE_CLUES: Final = Clues(_SHAPE_CLUES)
_OTHER_CLUES: Final = ((":", "(?=//)"), ('"', 'value"'))
"""A URL password's and a named value's."""
URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@:\"'\\]+:[^\s/@\"'\\]+@")
"""``scheme://user:password@``: the user and password are masked, the scheme and host kept."""


_TEXT_FIELD: Final = '"text":"'
MAX_CLEAN_PREFIXES: Final = 8
"""Envelopes a ``Redactor`` remembers as clean (a chunk's, a thought's, a tool call's output…)."""

NAMED_VALUE: Final = re.compile(r'("name":\s*"([^"\\]*)",\s*"value":\s*")((?:[^"\\]|\\.)*)"')
"""An ACP ``{"name": …, "value": …}`` pair in JSON text (an MCP server's env variable or header)."""


def scrub(text: str) -> str:
    """``text`` with every secret-shaped value (keys, tokens, URL passwords, private keys) masked,
    and, in JSON text, the value of every ``{"name": <secret name>, "value": …}`` pair."""
    if "://" in text:
        text = URL_PASSWORD.sub(rf"\1{MASK}@", text)
    if '"value"' in text:
        text = NAMED_VALUE.sub(_mask_named, text)
    if SHAPE_CLUES.search(text):
        text = secret_shape().sub(_mask, text)
    return text


_BY_FREQUENCY: Final = " etaoinsrhldcumfpgwybvkxjqzETAOINSRHLDCUMFPGWYBVKXJQZ0123456789.,:/=-_"
"""Characters by how often they occur in text, most often first (English letters, then the rest)."""


def _clue_of(value: str) -> tuple[str, str]:
    """A secret value as a clue: its rarest character (fewest places to try), and a regex that
    checks the rest of the value around it."""
    at = max(range(len(value)), key=lambda i: (_BY_FREQUENCY.find(value[i]) == -1, _BY_FREQUENCY.find(value[i])))
    after = re.escape(value[at + 1 :])
    return value[at], f"{after}(?<={re.escape(value)})" if at else after


def _mask_named(match: re.Match[str]) -> str:
    if SECRET_NAME.search(match.group(2)) and match.group(3):
        return f'{match.group(1)}{MASK}"'
    return match.group()


def _mask(match: re.Match[str]) -> str:
    found = match.group()
    if _inside_a_word(match.string, match.start()):
        return found  # "task-…" is not an "sk-" key
    # "Bearer <token>" keeps its scheme word, so the text still says what was there.
    return f"{found.split()[0]} {MASK}" if found[:6].lower() == "bearer" else MASK


def _inside_a_word(text: str, start: int) -> bool:
    if start == 0 or not text[start].isalnum():
        return False
    before = text[start - 1]
    # In JSON text, "\ntoken" is a line starting with the token, not the word "ntoken".
    escaped = start >= 2 and text[start - 2] == "\\"
    return (before.isalnum() or before == "_") and not escaped


def looks_secret(name: str, value: str) -> bool:
    """True for a variable whose name or value says it holds a secret."""
    return bool(SECRET_NAME.search(name)) or scrub(value) != value


class Redactor:
    """Masks the values of ``env``'s secret variables, then every secret-shaped value. Built once
    for an environment (finding its secrets costs a scan of every variable), called per text."""

    def __init__(self, env: Mapping[str, str]) -> None:
        found = {value for name, value in env.items() if len(value) >= SECRET_MIN_CHARS and looks_secret(name, value)}
        self._values = sorted(found, key=len, reverse=True)  # a longer secret may contain a shorter one
        # What a text must contain anywhere for a secret value, a URL password or a named value to
        # be in it; a shape's clues are looked for separately (``scrub_after`` skips a clean prefix).
        whole = [*map(_clue_of, self._values), *_OTHER_CLUES]
        self._whole = Clues(whole)
        self._any = Clues([*whole, *_SHAPE_CLUES])
        self._quoted_value = any('"' in value for value in self._values)
        self._clean_prefixes: list[str] = []

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return scrub(text)

    def might_change(self, text: str) -> bool:
        """False when ``self(text) == text`` for certain: ``text`` holds no secret value and no
        clue of a secret's shape. One pass of one regex over the text."""
        return self._any.search(text)

    def scrub_after(self, text: str, start: int) -> str:
        """``self(text)``, for a text whose first ``start`` characters are known to be left as they
        are by this redactor and end with a quote: shapes are looked for only after them.

        Why it is exact: no shape matches a quote, so no shape's match can span the prefix's last
        character; secret values, URL passwords and named values are still looked for everywhere;
        and whenever a clue shows up, the whole text is redacted as ``self(text)`` would.
        """
        if start and text[start - 1] != '"':
            return self(text)
        if self._whole.search(text) or SHAPE_CLUES.search(text, start):
            return self(text)
        return text

    def envelope_clean(self, prefix: str, suffix: str) -> bool:
        """True when every ``prefix + fragment + suffix`` is left as it is whenever
        ``fragment_clean(fragment)`` holds: ``prefix`` ends with a quote, ``suffix`` starts with
        one, both are clean, and neither holds a named value's key."""
        return (
            prefix.endswith('"')
            and suffix.startswith('"')
            and not self._quoted_value
            and '"value"' not in prefix
            and '"value"' not in suffix
            and self(prefix) == prefix
            and self(suffix) == suffix
        )

    def fragment_clean(self, fragment: str) -> bool:
        """True when ``fragment`` (the inside of a JSON string: no quote, backslash or control
        character) holds no secret value and no clue of one, so that between the quotes of an
        ``envelope_clean`` envelope it leaves the whole text as it is.

        Why it is exact: no shape, URL password or secret value (``envelope_clean`` refuses values
        holding a quote) can match across a quote, and named values need quotes of their own."""
        # Shorter than the shortest secret (a value, a shape, ``a://b:c@``) it holds none whole, and
        # no secret can span its quotes: many streamed chunks are a word or two.
        return len(fragment) < SECRET_MIN_CHARS or not self._any.search(fragment)

    def scrub_envelope(self, text: str) -> str:
        """``self(text)`` for the JSON text of a message, cheaper for the many that share an
        envelope: the text up to and including ``"text":"`` (a chunk's session, kind and block
        type), once found clean, is remembered and skipped (``scrub_after``)."""
        for prefix in self._clean_prefixes:
            if text.startswith(prefix):
                return self.scrub_after(text, len(prefix))
        clean = self(text)
        cut = text.find(_TEXT_FIELD)
        if cut > 0 and clean == text:
            self._learn_prefix(text[: cut + len(_TEXT_FIELD)])
        return clean

    def _learn_prefix(self, prefix: str) -> None:
        if self(prefix) != prefix:
            return
        if len(self._clean_prefixes) >= MAX_CLEAN_PREFIXES:
            self._clean_prefixes.pop(0)
        self._clean_prefixes.append(prefix)


def redact(text: str, env: Mapping[str, str]) -> str:
    """Mask in ``text`` the values of ``env``'s secret variables, then every secret-shaped value."""
    return Redactor(env)(text)


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without its secret variables (by name or by value)."""
    return {name: value for name, value in env.items() if not looks_secret(name, value)}


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets (``env``'s, and any secret-shaped value) in every record."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__()
        self._redact = Redactor(env)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True
