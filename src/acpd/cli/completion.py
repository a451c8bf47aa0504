"""CLI layer: ``acpd completion bash|zsh|fish``, a shell completion script generated from the command
line's own argparse parser, so that a command or option added to the parser is completed with no
second list to keep. Only reads the parser and prints text; it must not run any other command.

Every shell gets the same tables, written in its language: the sub-commands of each command path
(``""``, ``sessions``, ``sessions list``…), each path's options, which options take a value and
that value's choices. One small function per shell walks the words typed so far through them
(skipping options' values) and offers the sub-commands, the options (after a ``-``), an option's
choices, or files for an option that takes any value.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Final

SHELLS: Final = ("bash", "zsh", "fish")
FILES: Final = "@files"
"""What the tables say an option takes when any value goes (a path, a URL): the shell completes files."""


@dataclass
class Command:
    """What a command path offers: its sub-commands or a positional's choices (name → help), its
    options (flag → help),
    and what its valued options take (flag → choices, or ``FILES``)."""

    commands: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)


def add_completion_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(run=run_completion)


def run_completion(args: argparse.Namespace) -> int:
    from acpd.cli import build_parser  # the whole parser: every command is completed

    print(script(args.shell, build_parser()), end="")
    return 0


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    paths = command_paths(parser)
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](paths)


def command_paths(parser: argparse.ArgumentParser, path: str = "") -> dict[str, Command]:
    """Every command path of ``parser``, with what it offers."""
    here = Command()
    found = {path: here}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                here.commands[name] = helps.get(name, "")
                found.update(command_paths(sub, f"{path} {name}".strip()))
        elif not action.option_strings and action.choices:  # a positional of a few values (the shell)
            here.commands.update(dict.fromkeys(map(str, action.choices), _one_line(action.help or "")))
        for flag in action.option_strings:
            here.options[flag] = _one_line(action.help or "")
            if action.nargs != 0:
                here.values[flag] = tuple(str(c) for c in action.choices) if action.choices else (FILES,)
    return found


def _one_line(text: str) -> str:
    return " ".join(text.replace("%%", "%").split())


def _quoted(text: str) -> str:
    """``text`` as one single-quoted word of sh and zsh (inside single quotes only ``'`` is special)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fish_quoted(text: str) -> str:
    """``text`` as one single-quoted word of fish, where a backslash escapes ``'`` and itself."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sh_tables(paths: dict[str, Command]) -> str:
    """The tables as sh functions (bash and zsh both read them): each prints ``word<TAB>help`` lines."""
    subs, opts, values = [], [], []
    for path, command in paths.items():
        if command.commands:
            lines = "".join(f"{name}\t{_one_line(text)}\n" for name, text in command.commands.items())
            subs.append(f"    {_quoted(path)}) printf %s {_quoted(lines)} ;;")
        if command.options:
            lines = "".join(f"{flag}\t{text}\n" for flag, text in command.options.items())
            opts.append(f"    {_quoted(path)}) printf %s {_quoted(lines)} ;;")
        for flag, choices in command.values.items():
            lines = "".join(f"{choice}\t\n" for choice in choices)
            values.append(f"    {_quoted(path + '|' + flag)}) printf %s {_quoted(lines)} ;;")
    return f"""\
_acpd_commands() {{
  case "$1" in
{chr(10).join(subs)}
  esac
}}
_acpd_options() {{
  case "$1" in
{chr(10).join(opts)}
  esac
}}
_acpd_values() {{
  case "$1" in
{chr(10).join(values)}
    *) return 1 ;;
  esac
}}
# _acpd_candidates CURRENT WORD...: what may come as CURRENT after acpd WORD...,
# one "candidate<TAB>help" a line ({FILES}: complete a file name)
_acpd_candidates() {{
  # "where", not "path": zsh ties a variable named path to PATH
  local cur="$1" where='' value='' word next
  shift
  for word in "$@"; do
    if [ -n "$value" ]; then value=''; continue; fi
    if _acpd_values "$where|$word" >/dev/null; then value="$word"; continue; fi
    next="${{where:+$where }}$word"
    if _acpd_commands "$where" | cut -f1 | grep -q -x -F -e "$word"; then
      where="$next"
    fi
  done
  if [ -n "$value" ]; then _acpd_values "$where|$value"; return; fi
  case "$cur" in
    -*) _acpd_options "$where" ;;
    *) _acpd_commands "$where" ;;
  esac
}}
"""


def bash_script(paths: dict[str, Command]) -> str:
    return f"""\
# acpd completion for bash, generated by `acpd completion bash` from acpd's own parser.
# Load it with: source <(acpd completion bash)   (or save it in ~/.local/share/bash-completion/completions/acpd)
{_sh_tables(paths)}
_acpd() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" words
  words=$(_acpd_candidates "$cur" "${{COMP_WORDS[@]:1:COMP_CWORD-1}}" | cut -f1)
  COMPREPLY=()
  if [ "$words" = "{FILES}" ]; then
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
  fi
}}
complete -F _acpd acpd
"""


def zsh_script(paths: dict[str, Command]) -> str:
    return f"""\
#compdef acpd
# acpd completion for zsh, generated by `acpd completion zsh` from acpd's own parser.
# Load it with: source <(acpd completion zsh)   (after compinit), or save it as _acpd in a directory of $fpath
{_sh_tables(paths)}
_acpd() {{
  local -a found described
  local line
  found=("${{(@f)$(_acpd_candidates "${{words[CURRENT]}}" "${{(@)words[2,CURRENT-1]}}")}}")
  if [[ "${{found[1]%%$'\t'*}}" == "{FILES}" ]]; then
    _files
    return
  fi
  for line in $found; do
    [[ -n "$line" ]] && described+=("${{line%%$'\\t'*}}:${{${{line#*$'\\t'}}//:/\\\\:}}")
  done
  (( ${{#described}} )) && _describe 'acpd' described
}}
if (( $+functions[compdef] )); then
  compdef _acpd acpd
fi
"""


def fish_script(paths: dict[str, Command]) -> str:
    subs, opts, values = [], [], []
    for path, command in paths.items():
        if command.commands:
            lines = " ".join(_fish_quoted(f"{n}\t{_one_line(t)}") for n, t in command.commands.items())
            subs.append(f"        case {_fish_quoted(path)}\n            printf '%s\\n' {lines}")
        if command.options:
            lines = " ".join(_fish_quoted(f"{flag}\t{text}") for flag, text in command.options.items())
            opts.append(f"        case {_fish_quoted(path)}\n            printf '%s\\n' {lines}")
        for flag, choices in command.values.items():
            lines = " ".join(_fish_quoted(choice) for choice in choices)
            values.append(f"        case {_fish_quoted(path + '|' + flag)}\n            printf '%s\\n' {lines}")
    return f"""\
# acpd completion for fish, generated by `acpd completion fish` from acpd's own parser.
# Load it with: acpd completion fish | source   (or save it as ~/.config/fish/completions/acpd.fish)
function __acpd_commands
    switch $argv[1]
{chr(10).join(subs)}
    end
end
function __acpd_options
    switch $argv[1]
{chr(10).join(opts)}
    end
end
function __acpd_values
    switch $argv[1]
{chr(10).join(values)}
        case '*'
            return 1
    end
end
# __acpd_candidates CURRENT WORD...: as the sh version ({FILES}: complete a file name)
function __acpd_candidates
    set -l cur $argv[1]
    set -l path ''
    set -l value ''
    for word in $argv[2..-1]
        if test -n "$value"
            set value ''
            continue
        end
        if __acpd_values "$path|$word" >/dev/null
            set value $word
            continue
        end
        if __acpd_commands "$path" | string split -f1 \\t | string match -q -- "$word"
            set path (string trim -- "$path $word")
        end
    end
    if test -n "$value"
        __acpd_values "$path|$value"
    else if string match -q -- '-*' "$cur"
        __acpd_options "$path"
    else
        __acpd_commands "$path"
    end
end
function __acpd_complete
    set -l typed (commandline -opc)
    set -l found (__acpd_candidates (commandline -ct) $typed[2..-1])
    if test "$found[1]" = "{FILES}"
        __fish_complete_path (commandline -ct)
    else
        printf '%s\\n' $found
    end
end
complete -c acpd -f -a '(__acpd_complete)'
"""
