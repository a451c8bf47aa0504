"""Test kit: the mock agent's sessions: settings, history, and their JSONL files. Stdlib and orjson only.

A session's history is the list of ``session/update`` payloads it produced (user prompts as
``user_message_chunk``), which ``session/load`` replays. With a state directory every session is
also one append-only JSONL file there, so a later mock process can load or resume it:

    {"type": "session", "sessionId": "mock-…", "cwd": "/…"}   first line; repeated when the cwd changes
    {"type": "config", "values": {"mode": "plan", …}}         after each settings change
    {"type": "update", "update": {"sessionUpdate": …}}        one per history entry
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any, Final

import orjson

logger = logging.getLogger(__name__)

JsonObject = dict[str, Any]

MODES: Final = (("default", "Default", "Asks before acting"), ("plan", "Plan", "Plans without changing files"))
MODE_IDS: Final = frozenset(mode_id for mode_id, _, _ in MODES)
CONFIG_OPTIONS: Final = (
    ("mode", "Mode", "mode", tuple((mode_id, name) for mode_id, name, _ in MODES)),
    ("model", "Model", "model", (("mock-small", "Mock small"), ("mock-large", "Mock large"))),
    ("effort", "Effort", "thought_level", (("low", "Low"), ("medium", "Medium"), ("high", "High"))),
)
"""``(configId, name, category, ((value, name), …))``; the select options ACP clients see."""
DEFAULT_VALUES: Final = {"mode": "default", "model": "mock-small", "effort": "medium"}
CONTEXT_SIZE_TOKENS: Final = 200_000
_SAFE_SESSION_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class MockSession:
    """One session's settings, history and the prompts running on it."""

    def __init__(self, session_id: str, cwd: str) -> None:
        self.id = session_id
        self.cwd = cwd
        self.values: dict[str, str] = dict(DEFAULT_VALUES)
        self.history: list[JsonObject] = []
        self.title: str | None = None
        self.context: str | None = None
        """The transcript acpd carried into this session's last prompt, if any."""
        self.attachments: list[str] = []
        """What arrived of the last prompt's image, audio and resource blocks."""
        self.updated_at = time.time()
        self.open = True
        self.tool_calls = 0
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self._unsaved: list[JsonObject] = [self._header(), self._config_record()]

    def modes(self) -> JsonObject:
        available = [{"id": mode_id, "name": name, "description": text} for mode_id, name, text in MODES]
        return {"currentModeId": self.values["mode"], "availableModes": available}

    def config_options(self) -> list[JsonObject]:
        return [
            {
                "id": config_id,
                "name": name,
                "category": category,
                "type": "select",
                "currentValue": self.values[config_id],
                "options": [{"value": value, "name": label} for value, label in choices],
            }
            for config_id, name, category, choices in CONFIG_OPTIONS
        ]

    def set_value(self, config_id: str, value: str) -> None:
        """Change one setting.

        Raises:
            ValueError: the option or the value does not exist.
        """
        choices = {choice for cid, _, _, options in CONFIG_OPTIONS if cid == config_id for choice, _ in options}
        if not choices:
            raise ValueError(f"unknown config option {config_id!r}")
        if value not in choices:
            raise ValueError(f"{config_id} has no value {value!r}; choose one of {sorted(choices)}")
        self.values[config_id] = value
        self._unsaved.append(self._config_record())

    def set_cwd(self, cwd: str) -> None:
        if cwd != self.cwd:
            self.cwd = cwd
            self._unsaved.append(self._header())

    def record(self, update: JsonObject) -> None:
        """Append an update to the history that ``session/load`` replays."""
        self.history.append(update)
        self._unsaved.append({"type": "update", "update": update})
        self.updated_at = time.time()
        if update.get("sessionUpdate") == "session_info_update" and isinstance(update.get("title"), str):
            self.title = update["title"]

    def next_tool_call_id(self) -> str:
        self.tool_calls += 1
        return f"call_{self.tool_calls}"

    def info(self) -> JsonObject:
        """The ``SessionInfo`` that ``session/list`` returns."""
        info: JsonObject = {"sessionId": self.id, "cwd": self.cwd, "updatedAt": _iso(self.updated_at)}
        if self.title is not None:
            info["title"] = self.title
        return info

    def take_unsaved(self) -> list[JsonObject]:
        records, self._unsaved = self._unsaved, []
        return records

    def replay(self, record: JsonObject) -> None:
        """Apply one record read back from a JSONL file."""
        kind = record.get("type")
        if kind == "session" and isinstance(record.get("cwd"), str):
            self.cwd = record["cwd"]
        elif kind == "config" and isinstance(record.get("values"), dict):
            self.values.update({k: v for k, v in record["values"].items() if k in self.values and isinstance(v, str)})
        elif kind == "update" and isinstance(record.get("update"), dict):
            self.record(record["update"])
            if record["update"].get("sessionUpdate") == "tool_call":
                self.tool_calls += 1

    def _header(self) -> JsonObject:
        return {"type": "session", "sessionId": self.id, "cwd": self.cwd}

    def _config_record(self) -> JsonObject:
        return {"type": "config", "values": dict(self.values)}


class SessionStore:
    """Sessions in memory, backed by one JSONL file each when a state directory is given."""

    def __init__(self, state_dir: Path | None) -> None:
        self._dir = state_dir
        self._sessions: dict[str, MockSession] = {}
        if state_dir is not None:
            # prompts and answers: for the user's eyes only, whatever the umask; files an older
            # version left readable are tightened too
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            for path in state_dir.iterdir():
                if path.is_file() and not path.is_symlink():
                    os.chmod(path, 0o600)

    def create(self, cwd: str) -> MockSession:
        session = MockSession(f"mock-{uuid.uuid4().hex[:12]}", cwd)
        self._sessions[session.id] = session
        self.save(session)
        return session

    def get(self, session_id: str) -> MockSession | None:
        """A session of this process, or one an earlier process left in the state directory."""
        session = self._sessions.get(session_id)
        if session is None and (path := self._path(session_id)) is not None and path.is_file():
            session = self._read(session_id, path)
            self._sessions[session_id] = session
        return session

    def all(self) -> list[MockSession]:
        """Every known session, including the state directory's, most recently active first."""
        if self._dir is not None:
            for path in self._dir.glob("*.jsonl"):
                self.get(path.stem)
        return sorted(self._sessions.values(), key=lambda session: session.updated_at, reverse=True)

    def save_all(self) -> None:
        for session in self._sessions.values():
            self.save(session)

    def save(self, session: MockSession) -> None:
        records = session.take_unsaved()
        path = self._path(session.id)
        if path is None or not records:
            return
        with open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as file:
            file.write(b"".join(orjson.dumps(record) + b"\n" for record in records))

    def _path(self, session_id: str) -> Path | None:
        if self._dir is None or not _SAFE_SESSION_ID.fullmatch(session_id):
            return None
        return self._dir / f"{session_id}.jsonl"

    def _read(self, session_id: str, path: Path) -> MockSession:
        session = MockSession(session_id, "")
        session.open = False
        with path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    logger.warning("%s:%d is not JSON; skipped", path.name, number)
                    continue
                if isinstance(record, dict):
                    session.replay(record)
        session.take_unsaved()
        session.updated_at = os.stat(path).st_mtime
        return session


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
