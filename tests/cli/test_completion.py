"""``acpd completion bash|zsh|fish``: scripts generated from the parser, loaded into the real shells
and asked what they complete. A shell that is not installed skips its tests (.ci/run installs them)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acpd.cli import build_parser
from acpd.cli.completion import command_paths

TIMEOUT_SECONDS = 30


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each shell's script, as ``acpd completion SHELL`` prints it."""
    folder = tmp_path_factory.mktemp("completion")
    found = {}
    for shell in ("bash", "zsh", "fish"):
        done = subprocess.run(
            [sys.executable, "-m", "acpd", "completion", shell], capture_output=True, text=True, timeout=TIMEOUT_SECONDS
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        found[shell] = folder / f"acpd.{shell}"
        found[shell].write_text(done.stdout)
    return found


def in_shell(shell: str, code: str, cwd: Path | None = None) -> str:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    argv = {"bash": ["bash", "--norc", "-c"], "zsh": ["zsh", "-f", "-c"], "fish": ["fish", "--no-config", "-c"]}[shell]
    done = subprocess.run([*argv, code], capture_output=True, text=True, timeout=TIMEOUT_SECONDS, cwd=cwd)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def bash_completes(script: Path, *words: str, cwd: Path | None = None) -> list[str]:
    """What bash's completion function offers for ``acpd WORDS…`` (the last word being typed)."""
    line = shlex.join(["acpd", *words])
    code = f"source {shlex.quote(str(script))}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _acpd; "
    return in_shell("bash", code + 'printf "%s\\n" "${COMPREPLY[@]}"', cwd).split()


def test_bash_registers_the_function_for_acpd(scripts: dict[str, Path]) -> None:
    registered = in_shell("bash", f"source {shlex.quote(str(scripts['bash']))}; complete -p acpd")
    assert registered.strip() == "complete -F _acpd acpd"


def test_bash_completes_commands_actions_options_choices_and_files(scripts: dict[str, Path], tmp_path: Path) -> None:
    script = scripts["bash"]
    assert bash_completes(script, "sess") == ["sessions"]
    assert bash_completes(script, "sessions", "")[:4] == ["list", "show", "events", "export"]
    assert bash_completes(script, "sessions", "--url", "http://x", "list", "--j") == ["--json"]
    assert bash_completes(script, "serve", "--log-level", "") == ["debug", "info", "warning", "error"]
    assert bash_completes(script, "completion", "") == ["bash", "zsh", "fish"]
    (tmp_path / "my.toml").write_text("")
    assert bash_completes(script, "serve", "--config", "my", cwd=tmp_path) == ["my.toml"]


def test_bash_completion_cannot_drift_from_the_parser(scripts: dict[str, Path]) -> None:
    """Every command path the parser has, and every option of each, is what bash offers there."""
    through_compgen = in_shell(
        "bash",
        f"source {shlex.quote(str(scripts['bash']))}; compgen -W \"$(_acpd_candidates '' | cut -f1)\" -- ''",
    ).split()
    paths = command_paths(build_parser())
    assert through_compgen == list(paths[""].commands)
    for path, command in paths.items():
        words = path.split()
        if command.commands:
            assert bash_completes(scripts["bash"], *words, "") == list(command.commands), path
        assert bash_completes(scripts["bash"], *words, "-") == list(command.options), path


def test_zsh_registers_the_function_and_finds_what_bash_finds(scripts: dict[str, Path]) -> None:
    source = f"autoload -Uz compinit && compinit -u -D; source {shlex.quote(str(scripts['zsh']))}"
    assert in_shell("zsh", f"{source}; print -r -- $_comps[acpd]").strip() == "_acpd"
    found = in_shell("zsh", f"{source}; _acpd_candidates '' sessions; _acpd_candidates '' serve --log-level")
    sessions = list(command_paths(build_parser())["sessions"].commands)
    assert [line.split("\t")[0] for line in found.splitlines()] == [*sessions, "debug", "info", "warning", "error"]
    assert "list\tlist sessions" in found


def test_fish_completes_commands_with_their_help_options_choices_and_files(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    source = f"source {shlex.quote(str(scripts['fish']))}"
    found = in_shell("fish", f"{source}; complete -C 'acpd sessions '; complete -C 'acpd serve --log-level '")
    assert "list\tlist sessions" in found.splitlines()
    assert {"debug", "info", "warning", "error"} <= set(found.splitlines())
    assert in_shell("fish", f"{source}; complete -C 'acpd agents list --js'").startswith("--json\t")
    (tmp_path / "my.toml").write_text("")
    assert in_shell("fish", f"{source}; complete -C 'acpd serve --config my'", tmp_path).strip() == "my.toml"


def test_zsh_hands_described_candidates_to_describe_and_files_to_files(scripts: dict[str, Path]) -> None:
    """The function compsys calls, with compsys's own helpers stood in for (they need a live line
    editor): what it passes them."""
    stand_ins = "_describe() { print -rl -- ${(P)2} }; _files() { print files }"
    source = f"autoload -Uz compinit && compinit -u -D; source {shlex.quote(str(scripts['zsh']))}; {stand_ins}"
    found = in_shell("zsh", f"{source}; words=(acpd sessions ''); CURRENT=3; _acpd")
    assert found.splitlines()[:3] == [
        "list:list sessions",
        "show:show one session",
        "events:print a session's events, one a line",
    ]
    assert len(found.splitlines()) == len(command_paths(build_parser())["sessions"].commands)
    assert in_shell("zsh", f"{source}; words=(acpd serve --config ''); CURRENT=4; _acpd").strip() == "files"


def test_help_with_quotes_backslashes_and_dollars_reaches_every_shell_as_written(tmp_path: Path) -> None:
    from acpd.cli.completion import script

    awkward = 'it\'s a \\ back`slash` $HOME "quoted"'
    parser = argparse.ArgumentParser(prog="acpd")
    parser.add_subparsers().add_parser("odd", help=awkward)
    for shell, code in (
        ("bash", "_acpd_candidates ''"),
        ("zsh", "_acpd_candidates ''"),
        ("fish", "complete -C 'acpd o'"),
    ):
        path = tmp_path / f"acpd.{shell}"
        path.write_text(script(shell, parser))
        load = "autoload -Uz compinit && compinit -u -D; " if shell == "zsh" else ""
        assert in_shell(shell, f"{load}source {shlex.quote(str(path))}; {code}").splitlines() == [f"odd\t{awkward}"]
