"""A config file is checked at start without pydantic (``config_check``), against tables of the
agents' and the policy's fields: the tables say what the models say, field by field; what the check
accepts the models accept (and build the same), what the models refuse the check refuses; the
models are built from the file's sections at their first use, not while the file is read."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel, ValidationError

from acpd import config_check
from acpd.cli import INTERNAL_AGENT_FIELDS, load_config
from acpd.config import AgentConfig, ClientCapabilities, FsCapabilities, Policy
from acpd.config_check import AGENT, CAPABILITIES, FS, POLICY, Refused, Setting
from acpd.errors import ConfigError
from acpd.settings import DaemonConfig

TABLES: list[tuple[Mapping[str, Setting], type[BaseModel], frozenset[str]]] = [
    (AGENT, AgentConfig, INTERNAL_AGENT_FIELDS),
    (POLICY, Policy, frozenset()),
    (CAPABILITIES, ClientCapabilities, frozenset()),
    (FS, FsCapabilities, frozenset()),
]
SAMPLES: list[object] = [
    "x", "", "4600", " 12 ", "1_000", "-3", "0x10", "1.5", "2e3", "inf", "nan", "true", "off", "Yes", "maybe",
    0, 1, 2, -1, 4600, 0.0, 0.5, 3.0, -2.5, True, False,
    [], ["a", "b"], ["a", 1], {}, {"A": "b"}, {"A": 1}, {"fs": {}}, "acp", "claude-native", "deny", "allow_reads",
]  # fmt: skip
"""Values a TOML file can hold, of every type the tables know, each tried on every field."""


def stricter(kind: object, value: object) -> bool:
    """Where the check is deliberately stricter than pydantic: a boolean for a number, a number
    written with a fraction for a boolean."""
    return (isinstance(value, bool) and kind in ("int", "float")) or (isinstance(value, float) and kind == "bool")


def kind_of(annotation: Any) -> object:
    """A model field's annotation as a ``Setting.kind`` (None dropped: TOML has no null)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    plain = {str: "str", int: "int", float: "float", bool: "bool"}
    if annotation in plain:
        return plain[annotation]
    if annotation == tuple[str, ...]:
        return "strings"
    if typing.get_origin(annotation) is Mapping and typing.get_args(annotation) == (str, str):
        return "string map"
    raise AssertionError(f"no kind for {annotation!r}")


def bounds_of(metadata: list[object]) -> dict[str, float]:
    bounds: dict[str, float] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            bounds["gt"] = float(item.gt)  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Ge):
            bounds["ge"] = float(item.ge)  # type: ignore[arg-type]
        else:
            raise AssertionError(f"a constraint the check does not know: {item!r}")
    return bounds


@pytest.mark.parametrize(("table", "model", "internal"), TABLES, ids=lambda v: getattr(v, "__name__", ""))
def test_each_table_names_its_models_fields_with_their_aliases_types_and_bounds(
    table: Mapping[str, Setting], model: type[BaseModel], internal: frozenset[str]
) -> None:
    fields = {name: info for name, info in model.model_fields.items() if name not in internal}
    assert set(table) == set(fields)
    nested: list[tuple[Mapping[str, Setting], type[BaseModel]]] = [
        (CAPABILITIES, ClientCapabilities),
        (FS, FsCapabilities),
    ]
    for name, info in fields.items():
        setting = table[name]
        assert setting.alias == info.alias, name
        kind = setting.kind
        expected = kind_of(info.annotation)
        if isinstance(kind, Mapping):
            assert expected is next(m for t, m in nested if t is kind), name
        else:
            assert kind == expected, name
        assert {bound: float(limit) for bound, limit in setting.bounds.items()} == bounds_of(info.metadata), name


@pytest.mark.parametrize(("table", "model"), [(AGENT, AgentConfig), (POLICY, Policy)], ids=["agent", "policy"])
@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_what_the_check_accepts_the_model_accepts_and_what_the_model_refuses_the_check_refuses(
    table: Mapping[str, Setting], model: type[BaseModel], value: object
) -> None:
    for name, setting in table.items():
        for key in filter(None, (name, setting.alias)):
            section = {key: value, "command": "x"} if model is AgentConfig and key != "command" else {key: value}
            try:
                if model is AgentConfig:
                    config_check.check_agent("mine", section)
                else:
                    config_check.check_section(section, table)
                checked = True
            except Refused:
                checked = False
            try:
                model.model_validate(section)
                accepted = True
            except ValidationError:
                accepted = False
            if checked:
                assert accepted, (key, value)
            elif accepted:
                assert stricter(setting.kind, value), (key, value)


def test_every_daemon_setting_has_a_type_the_check_knows() -> None:
    kinds = config_check.daemon_kinds()
    assert "port" in kinds and "agents" not in kinds and "policy_section" not in kinds
    assert config_check.daemon_values({"port": "4600", "allowed_hosts": ["a"], "auth": "no"}) == {
        "port": 4600,
        "allowed_hosts": ("a",),
        "auth": False,
    }


def test_a_files_agents_and_policy_are_models_only_once_used_and_the_same_as_built_directly(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[agents.mine]\ncommand = 'mine'\nargs = ['-v']\nstartTimeoutSeconds = '2.5'\n"
        "clientCapabilities = { fs = { readTextFile = false } }\n[policy]\nmaxSteps = 3\n"
    )
    config = load_config(argparse.Namespace(config=str(path)), {})
    assert config.agents == {} and config.policy is None
    assert "_built_agents" not in config.__dict__ and "_built_policy" not in config.__dict__
    section = {
        "command": "mine",
        "args": ["-v"],
        "startTimeoutSeconds": "2.5",
        "clientCapabilities": {"fs": {"readTextFile": False}},
    }
    assert config.configured_agents() == {"mine": AgentConfig.model_validate(section)}
    assert config.session_policy() == Policy(max_steps=3)
    assert config.all_agents()["mine"].start_timeout_seconds == 2.5


def test_an_agent_given_as_a_model_wins_over_a_section_of_the_same_name() -> None:
    config = DaemonConfig(agent_sections={"a": {"command": "from-file"}}, agents={"a": AgentConfig(command="given")})
    assert config.configured_agents()["a"].command == "given"


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[agents.mine]\npreset = 'vim'\n", "[agents.mine] preset: unknown preset; presets: claude, "),
        ("[agents.mine]\ndescription = 'no command'\n", "agent 'mine' needs a command, or a preset"),
        ("[agents.mine]\ncommand = 'x'\nclientCapabilities = { fs = { readTextFile = 3 } }\n", "fs.readTextFile: "),
        ("[agents.mine]\ncommand = 'x'\nmaxSessionsPerProcess = 0\n", "maxSessionsPerProcess: must be at least 1"),
        ("[agents]\nmine = 3\n", "[agents.mine] must be a table (got 3)"),
        ("agents = 3\n", "[agents] must be a table (got 3)"),
        ("[policy]\npermissions = 'sometimes'\n", "[policy] permissions: must be one of 'ask', "),
        ("[daemon]\nauth = 'perhaps'\n", "[daemon] auth: must be true or false (got 'perhaps')"),
        (
            "[daemon]\nagents = { mine = { command = 'x' } }\n",
            "[daemon] agents: unknown key",
        ),
    ],
)
def test_a_wrong_section_is_refused_while_the_file_is_read(tmp_path: Path, toml: str, said: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as refused:
        load_config(argparse.Namespace(config=str(path)), {})
    assert said in str(refused.value)
