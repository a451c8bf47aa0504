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


def test_a_home_prepared_for_another_user_directory_links_this_ones_entries(tmp_path: Path) -> None:
    """One agents directory, two daemons with different homes (or a home that moved): the links name
    the entries of the home preparing it now, and links to entries that are gone are removed."""
    first = PrivateHome.model_validate({**home_in(tmp_path).model_dump(), "user_home": str(tmp_path / "a")})
    second = PrivateHome.model_validate({**home_in(tmp_path).model_dump(), "user_home": str(tmp_path / "b")})
    (tmp_path / "a" / ".gemini").mkdir(parents=True)
    (tmp_path / "a" / ".gemini" / "GEMINI.md").write_text("a's memory")
    (tmp_path / "a" / ".gemini" / "only-in-a").write_text("a")
    (tmp_path / "b" / ".gemini").mkdir(parents=True)
    (tmp_path / "b" / ".gemini" / "GEMINI.md").write_text("b's memory")
    prepare_home(first)
    (tmp_path / "a" / ".gemini" / "only-in-a").unlink()
    prepare_home(second)
    ours = Path(second.path) / ".gemini"
    assert (ours / "GEMINI.md").read_text() == "b's memory"
    assert not (ours / "only-in-a").is_symlink()


def test_without_settings_of_the_users_the_switches_alone_are_written(tmp_path: Path) -> None:
    home = home_in(tmp_path)
    prepare_home(home)
    assert written(home) == SWITCHES
    assert not (tmp_path / "user").exists()


def test_a_home_that_cannot_be_written_makes_the_agent_unavailable(tmp_path: Path) -> None:
    (tmp_path / "agents").write_text("a file where the directory should be")
    with pytest.raises(AgentUnavailable, match="cannot prepare the agent's home"):
        prepare_home(home_in(tmp_path))


LOCK = '{"packages": {"": {"dependencies": {"@opencode-ai/plugin": "1.18.33"}}}}\n'


def xdg_home_in(tmp_path: Path) -> PrivateHome:
    """Like opencode's: the whole of the user's $XDG_CONFIG_HOME stands behind it."""
    return PrivateHome(
        path=str(tmp_path / "agents" / "opencode" / "xdg"),
        config_dir="opencode",
        user_home=str(tmp_path / "user" / ".config"),
        link_home=True,
        files={"package-lock.json": LOCK},
        unlinked=("package.json",),
        directories=("node_modules",),
    )


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): path.read_text() if path.is_file() else "" for path in directory.rglob("*")
    }


def test_a_home_for_a_config_variable_links_every_other_entry_and_writes_its_own_files(tmp_path: Path) -> None:
    config = tmp_path / "user" / ".config"
    (config / "git").mkdir(parents=True)
    (config / "git" / "config").write_text("[user]\n")
    (config / "opencode" / "tool").mkdir(parents=True)
    (config / "opencode" / "opencode.json").write_text('{"theme": "mine"}')
    (config / "opencode" / "package.json").write_text('{"dependencies": {"left-pad": "1"}}')
    (config / "opencode" / "package-lock.json").write_text("{}")
    before = snapshot(tmp_path / "user")
    home = xdg_home_in(tmp_path)
    prepare_home(home)
    ours = Path(home.path)
    # The commands the agent runs inherit the variable: their config is still the user's.
    assert (ours / "git").is_symlink() and (ours / "git" / "config").read_text() == "[user]\n"
    assert not (ours / "opencode").is_symlink()
    assert (ours / "opencode" / "opencode.json").is_symlink()
    assert (ours / "opencode" / "tool").resolve() == (config / "opencode" / "tool").resolve()
    assert (ours / "opencode" / "package-lock.json").read_text() == LOCK
    assert not (ours / "opencode" / "package-lock.json").is_symlink()
    assert not (ours / "opencode" / "package.json").exists()
    assert (ours / "opencode" / "node_modules").is_dir()
    assert not (ours / "opencode" / "node_modules").is_symlink()
    assert snapshot(tmp_path / "user") == before


def test_a_directory_the_user_has_is_linked_and_a_stale_link_to_it_is_replaced(tmp_path: Path) -> None:
    theirs = tmp_path / "user" / ".config" / "opencode" / "node_modules"
    (theirs / "@opencode-ai" / "plugin").mkdir(parents=True)
    home = xdg_home_in(tmp_path)
    prepare_home(home)
    ours = Path(home.path) / "opencode" / "node_modules"
    assert ours.is_symlink() and (ours / "@opencode-ai" / "plugin").is_dir()
    (theirs / "@opencode-ai" / "plugin").rmdir()
    (theirs / "@opencode-ai").rmdir()
    theirs.rmdir()
    prepare_home(home)
    assert ours.is_dir() and not ours.is_symlink()


def test_a_file_of_the_homes_own_replaces_a_link_without_writing_through_it(tmp_path: Path) -> None:
    theirs = tmp_path / "user" / ".config" / "opencode"
    theirs.mkdir(parents=True)
    (theirs / "package-lock.json").write_text("{}")
    home = xdg_home_in(tmp_path)
    ours = Path(home.path) / "opencode"
    ours.mkdir(parents=True)
    (ours / "package-lock.json").symlink_to(theirs / "package-lock.json")
    prepare_home(home)
    assert (ours / "package-lock.json").read_text() == LOCK
    assert (theirs / "package-lock.json").read_text() == "{}"


def test_a_home_without_a_settings_file_writes_none(tmp_path: Path) -> None:
    home = xdg_home_in(tmp_path)
    prepare_home(home)
    assert sorted(path.name for path in (Path(home.path) / "opencode").iterdir()) == [
        "node_modules",
        "package-lock.json",
    ]
    assert not (tmp_path / "user").exists()
