"""Configuration records take what pydantic took from TOML and JSON, and refuse the rest by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from acpd.cli import main
from acpd.config import AgentConfig, ClientCapabilities, DaemonConfig, Policy
from acpd.records import InvalidRecord


def test_a_field_is_given_by_its_name_or_its_alias() -> None:
    assert Policy.model_validate({"maxSteps": 3}) == Policy(max_steps=3)
    assert Policy.model_validate({"max_steps": 3}).max_steps == 3


def test_lists_become_tuples_objects_become_records_and_an_integer_is_a_fine_float() -> None:
    agent = AgentConfig.model_validate(
        {"command": "x", "args": ["-v"], "startTimeoutSeconds": 90, "clientCapabilities": {"terminal": False}}
    )
    assert agent.args == ("-v",)
    assert agent.start_timeout_seconds == 90.0 and isinstance(agent.start_timeout_seconds, float)
    assert agent.client_capabilities == ClientCapabilities(terminal=False)
    config = DaemonConfig.model_validate({"agents": {"x": {"command": "x"}}, "policy": {"permissions": "deny"}})
    assert config.agents["x"].command == "x" and config.policy.permissions == "deny"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"maxSteps": "3"}, "maxSteps: must be a number, not '3'"),
        ({"maxSteps": True}, "maxSteps: must be a number, not True"),
        ({"maxSteps": -1}, "maxSteps: must be at least 0, not -1"),
        ({"turnTimeoutSeconds": 0}, "turnTimeoutSeconds: must be greater than 0, not 0.0"),
        ({"permissions": "sometimes"}, "permissions: must be one of 'ask', 'allow', 'deny', 'allow_reads'"),
        ({"showThinking": "yes"}, "showThinking: must be true or false, not 'yes'"),
        ({"maxStep": 3}, "maxStep: unknown field of Policy"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRecord) as refused:
        Policy.model_validate(data)
    assert str(refused.value).startswith(message)
    assert isinstance(refused.value, ValueError)  # where callers catch it


def test_a_record_is_frozen_and_a_copy_is_checked_again() -> None:
    policy = Policy()
    with pytest.raises(AttributeError):
        policy.max_steps = 3  # type: ignore[misc]
    assert policy.model_copy(update={"max_steps": 2}).max_steps == 2
    with pytest.raises(InvalidRecord, match="maxSteps"):
        policy.model_copy(update={"max_steps": -2})
    with pytest.raises(ValueError, match="unknown preset"):
        AgentConfig().model_copy(update={"preset": "nope"})


def test_a_dump_by_alias_is_the_wire_form() -> None:
    assert Policy(max_steps=1).model_dump(by_alias=True) == {
        "permissions": "ask",
        "maxSteps": 1,
        "maxBudgetTokens": None,
        "turnTimeoutSeconds": None,
        "permissionTimeoutSeconds": None,
        "showThinking": True,
    }
    assert AgentConfig().model_dump()["client_capabilities"] == {
        "fs": {"read_text_file": None, "write_text_file": None},
        "terminal": None,
    }


def test_an_object_is_required_where_a_record_is_expected() -> None:
    with pytest.raises(InvalidRecord, match="policy: Policy must be an object, not list"):
        DaemonConfig.model_validate({"policy": []})


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[daemon]\nport = "x"\n', "acpd: invalid configuration: port: must be a number, not 'x'"),
        ("[policy]\nmaxSteps = -1\n", "[policy] maxSteps: must be at least 0, not -1"),
        ('[agents.mine]\ncommand = "x"\nargs = "-v"\n', "[agents.mine] args: must be a list, not str"),
    ],
)
def test_a_wrong_config_file_is_one_line_naming_the_field_not_a_traceback(
    toml: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(SystemExit) as exited:
        main(["agents", "list", "--config", str(path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
