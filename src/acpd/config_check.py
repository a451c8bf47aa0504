"""Leaf module: a config file's values checked with the stdlib alone, so that a daemon with a config
file starts as light as one without, and a wrong file still fails at start, one line naming the field.

The agents' and the policy's models (``config``'s pydantic ``AgentConfig``, ``Policy``) cost more
than the rest of a daemon's start together (pydantic and the building of the models: ~70 ms and
~11 MiB here). So at start a file's ``[agents.*]`` and ``[policy]`` sections are checked against
``AGENT`` and ``POLICY``, plain tables of the models' fields, and kept as they were written; the
models are built from them when first needed (``DaemonConfig.configured_agents``,
``session_policy``). Every value these tables accept, the models accept too (lax conversions
included: ``"4600"`` for an integer): tests/config/test_config_check.py holds the tables and the
models together, field by field. ``[daemon]`` is checked against ``DaemonConfig``'s own fields
and converted (``daemon_values``).

Imports only the stdlib and ``settings``; ``presets`` (the preset names) only when a section names
a preset or gives no command. Reads nothing: ``cli`` reads the file and the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

from acpd.settings import DaemonConfig

Kind = Literal["str", "int", "float", "bool", "strings", "string map"]
"""A field's type: ``strings`` is a list of strings (a tuple in the model), ``string map`` a table
of strings."""


@dataclass(frozen=True)
class Setting:
    """One field of a section: its type (a ``Kind``, the allowed values, or a nested table), the
    name a file may use besides the field's own (the camelCase alias), and its bounds."""

    kind: Kind | tuple[str, ...] | Mapping[str, Setting]
    alias: str | None = None
    bounds: Mapping[str, float] = field(default_factory=dict)


FS: Final[Mapping[str, Setting]] = {
    "read_text_file": Setting("bool", "readTextFile"),
    "write_text_file": Setting("bool", "writeTextFile"),
}
CAPABILITIES: Final[Mapping[str, Setting]] = {"fs": Setting(FS), "terminal": Setting("bool")}
AGENT: Final[Mapping[str, Setting]] = {
    "kind": Setting(("acp", "claude-native")),
    "preset": Setting("str"),
    "command": Setting("str"),
    "args": Setting("strings"),
    "env": Setting("string map"),
    "cwd": Setting("str"),
    "description": Setting("str"),
    "model_url": Setting("str", "modelUrl"),
    "continue_sessions": Setting("bool", "continueSessions"),
    "exits_on_stdin_close": Setting("bool", "exitsOnStdinClose"),
    "stop_detached_on_cancel": Setting("bool", "stopDetachedOnCancel"),
    "start_timeout_seconds": Setting("float", "startTimeoutSeconds", {"gt": 0}),
    "client_capabilities": Setting(CAPABILITIES, "clientCapabilities"),
    "process_per_session": Setting("bool", "processPerSession"),
    "spare_processes": Setting("int", "spareProcesses", {"ge": 0}),
    "max_sessions_per_process": Setting("int", "maxSessionsPerProcess", {"ge": 1}),
    "idle_seconds": Setting("float", "idleSeconds", {"ge": 0}),
}
"""``config.AgentConfig`` as a config file may set it (``installed``, ``files`` and ``home`` are
acpd's own: ``cli`` refuses them by name)."""
POLICY: Final[Mapping[str, Setting]] = {
    "permissions": Setting(("ask", "allow", "deny", "allow_reads")),
    "max_steps": Setting("int", "maxSteps", {"ge": 0}),
    "max_budget_tokens": Setting("int", "maxBudgetTokens", {"ge": 0}),
    "turn_timeout_seconds": Setting("float", "turnTimeoutSeconds", {"gt": 0}),
    "permission_timeout_seconds": Setting("float", "permissionTimeoutSeconds", {"gt": 0}),
    "show_thinking": Setting("bool", "showThinking"),
}
"""``config.Policy``."""

SECTIONS: Final = frozenset({"agents", "policy", "agent_sections", "policy_section"})
"""``DaemonConfig`` fields a file sets in sections of their own (``[agents.*]``, ``[policy]``),
not in ``[daemon]``."""
_ANNOTATION_KINDS: Final[Mapping[str, Kind]] = {
    "str": "str",
    "str | None": "str",  # TOML has no null: a value given is a string
    "int": "int",
    "float": "float",
    "bool": "bool",
    "tuple[str, ...]": "strings",
}
_DIGITS: Final = "[0-9]+(_[0-9]+)*"
_NUMBER: Final = re.compile(
    rf"[+-]?({_DIGITS}(\.({_DIGITS})?)?|\.{_DIGITS})([eE][+-]?{_DIGITS})?|[+-]?(inf|infinity|nan)", re.IGNORECASE
)
_TRUE: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE: Final = frozenset({"0", "off", "f", "false", "n", "no"})


class Refused(ValueError):
    """A value refused: ``where`` names it (``maxSteps``, ``clientCapabilities.fs.readTextFile``)."""

    def __init__(self, where: str, problem: str, value: object) -> None:
        super().__init__(f"{where}: {problem} (got {value!r})")


def daemon_values(section: Mapping[str, Any]) -> dict[str, Any]:
    """``[daemon]``'s values, checked against ``DaemonConfig``'s field types and converted to them
    (bounds are ``DaemonConfig.validated``'s).

    Raises:
        Refused: an unknown key, or a value of the wrong type.
    """
    kinds = daemon_kinds()
    values = {}
    for key, value in section.items():
        if key not in kinds:
            raise Refused(key, "unknown key", value)
        values[key] = converted(key, value, kinds[key])
    return values


def daemon_kinds() -> dict[str, Kind]:
    """Each ``DaemonConfig`` field a ``[daemon]`` section may set, with its type."""
    return {spec.name: _ANNOTATION_KINDS[str(spec.type)] for spec in fields(DaemonConfig) if spec.name not in SECTIONS}


def check_section(section: object, schema: Mapping[str, Setting], prefix: str = "") -> None:
    """Refuse what the section's model would refuse: an unknown key, a value of the wrong type or
    out of bounds. A name and its alias are both accepted, as the models accept both.

    Raises:
        Refused: naming the field by the name the file used (with the path to it, when nested).
    """
    if not isinstance(section, Mapping):
        raise Refused(prefix.rstrip(".") or "value", "must be a table", section)
    names = {name: name for name in schema} | {s.alias: name for name, s in schema.items() if s.alias}
    for key, value in section.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise Refused(where, "unknown key", value)
        setting = schema[names[key]]
        if isinstance(setting.kind, Mapping):
            check_section(value, setting.kind, f"{where}.")
            continue
        if isinstance(setting.kind, tuple):
            if not isinstance(value, str) or value not in setting.kind:
                raise Refused(where, f"must be one of {', '.join(map(repr, setting.kind))}", value)
            continue
        _check_bounds(where, converted(where, value, setting.kind), setting.bounds, value)


def check_agent(name: str, section: Mapping[str, Any]) -> None:
    """An agent section, and the preset it names (``presets`` is imported only then).

    Raises:
        Refused: see ``check_section``; or an unknown preset.
    """
    check_section(section, AGENT)
    preset = section.get("preset")
    if preset is not None:
        from acpd.presets import PRESETS

        if preset not in PRESETS:
            raise Refused("preset", f"unknown preset; presets: {', '.join(PRESETS)}", preset)


def converted(where: str, value: object, kind: Kind) -> object:
    """``value`` as ``kind``, as pydantic's lax mode converts it (TOML's own types, and numbers and
    booleans written as strings); never anything it would refuse.

    Raises:
        Refused: the value cannot be one of ``kind``.
    """
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int":
        number = _integer(value)
        if number is not None:
            return number
    if kind == "float":
        real = _real(value)
        if real is not None:
            return real
    if kind == "bool":
        truth = _truth(value)
        if truth is not None:
            return truth
    if kind == "strings" and isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    if kind == "string map" and isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        return dict(value)
    raise Refused(where, _EXPECTED[kind], value)


_EXPECTED: Final[Mapping[Kind, str]] = {
    "str": "must be a string",
    "int": "must be an integer",
    "float": "must be a number",
    "bool": "must be true or false",
    "strings": "must be a list of strings",
    "string map": "must be a table of strings",
}


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None  # pydantic takes it as 0 or 1; a file that says so means something else
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(f"[+-]?{_DIGITS}", value.strip()):
        return int(value.strip())
    return None


def _real(value: object) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value  # an int is a float as far as the settings go (and says "0", not "0.0")
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value.strip())
    return None


def _truth(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return None


def _check_bounds(where: str, value: object, bounds: Mapping[str, float], given: object) -> None:
    if not bounds:
        return
    assert isinstance(value, int | float)
    for bound, limit in bounds.items():
        if bound == "gt" and not value > limit:
            raise Refused(where, f"must be greater than {limit}", given)
        if bound == "ge" and not value >= limit:
            raise Refused(where, f"must be at least {limit}", given)
