"""An agent's home of its own: the user's settings merged under the preset's switches, the rest
of the user's config directory linked, and nothing of the user's written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acpd.adapters.homes import prepare_home
from acpd.config import PrivateHome
from acpd.errors import AgentUnavailable

SWITCHES = {"privacy": {"usageStatisticsEnabled": False}, "general": {"disableAutoUpdate": True}}


def home_in(tmp_path: Path) -> PrivateHome:
    return PrivateHome(
        path=str(tmp_path / "agents" / "gemini" / "home"),
        config_dir=".gemini",
        settings_file="settings.json",
        user_home=str(tmp_path / "user"),
        settings=SWITCHES,
    )


def written(home: PrivateHome) -> dict[str, object]:
    settings: dict[str, object] = json.loads((Path(home.path) / ".gemini" / "settings.json").read_text())
    return settings


def test_the_users_settings_are_kept_under_the_switches_and_their_file_is_untouched(tmp_path: Path) -> None:
    theirs = tmp_path / "user" / ".gemini"
    theirs.mkdir(parents=True)
    text = (
        '// mine\n{"privacy": {"usageStatisticsEnabled": true, "x": 1}, /* auth */\n'
        ' "security": {"auth": {"selectedType": "oauth-personal"}}, "url": "http://a//b"}\n'
    )
    (theirs / "settings.json").write_text(text)
    home = home_in(tmp_path)
    prepare_home(home)
    assert written(home) == {
        "privacy": {"usageStatisticsEnabled": False, "x": 1},
        "security": {"auth": {"selectedType": "oauth-personal"}},
        "url": "http://a//b",
        "general": {"disableAutoUpdate": True},
    }
    assert (theirs / "settings.json").read_text() == text


def test_the_users_other_entries_are_linked_and_what_the_agent_made_stays(tmp_path: Path) -> None:
    theirs = tmp_path / "user" / ".gemini"
    (theirs / "commands").mkdir(parents=True)
    (theirs / "oauth_creds.json").write_text("{}")
    home = home_in(tmp_path)
    prepare_home(home)
    ours = Path(home.path) / ".gemini"
    assert (ours / "oauth_creds.json").resolve() == (theirs / "oauth_creds.json").resolve()
    assert (ours / "commands").is_symlink()
    (ours / "history").write_text("the agent's own")
    (theirs / "GEMINI.md").write_text("memory")
    prepare_home(home)
    assert (ours / "history").read_text() == "the agent's own"
    assert (ours / "GEMINI.md").read_text() == "memory"


def test_without_settings_of_the_users_the_switches_alone_are_written(tmp_path: Path) -> None:
    home = home_in(tmp_path)
    prepare_home(home)
    assert written(home) == SWITCHES
    assert not (tmp_path / "user").exists()


def test_a_home_that_cannot_be_written_makes_the_agent_unavailable(tmp_path: Path) -> None:
    (tmp_path / "agents").write_text("a file where the directory should be")
    with pytest.raises(AgentUnavailable, match="cannot prepare the agent's home"):
        prepare_home(home_in(tmp_path))
