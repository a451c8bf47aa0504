"""Leaf module: the built-in agent presets as data (claude, codex, gemini, opencode).

Each preset says which pinned npm packages ``acpd agents install`` puts in acpd's agents
directory, where the program lands, and every argument and environment switch that keeps the
agent from calling anything but its model API (``shared/reference/real-agents-offline.md``).
``model_url`` points an agent's model traffic at one base URL (a gateway, or acpd's mock model
server). Reads nothing and runs nothing: ``config`` turns a preset into an ``AgentConfig`` and
the daemon inspects and installs. Imports only the stdlib.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PLACEHOLDER_KEY: Final = "acpd-no-key"
"""Sent as the API key when a model URL is set and the agent's own key variable is not: a local
mock accepts anything, and a gateway that needs a real key answers 401 and says so."""
MODEL_KEY_VARIABLE: Final = "ACPD_MODEL_API_KEY"
"""Codex reads its custom provider's key from the variable its config names: this one."""

_Env = dict[str, str]
ModelRoute = Callable[[str, Mapping[str, str]], tuple[_Env, tuple[str, ...]]]
"""(model base URL, the daemon's environment) → (extra environment, extra arguments)."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A program an agent runs its commands under, and the setting that turns that sandbox off.

    Without the program every command the agent runs fails, unless the user turned the sandbox off
    (an explicit choice: commands then run unconfined, as the user)."""

    program: str
    """Looked up on PATH, then at ``bundled`` next to the agent's program."""
    install: str
    """How to install it, for the reason shown when it is missing."""
    bundled: str
    setting: str
    """The agent's config key (``-c key=value`` or its config file) that selects the sandbox."""
    off: str
    """The value of ``setting`` that runs commands without the sandbox."""
    config_file: str
    """The agent's own config file (``~`` is the home directory), where ``setting`` may be too."""
    home_variable: str
    """The variable that moves ``config_file``'s directory."""


@dataclass(frozen=True, slots=True)
class Home:
    """A home directory of the agent's own, under the preset's directory, the agent is pointed at.

    For an agent that honours its switches only in its user settings file, or that writes into its
    config directory what acpd must not let it (opencode's plugin install): acpd writes its files
    there (the settings file: the user's own settings with the switches on top) and links every
    other entry of the user's config directory (credentials, memory, commands, history) into it.
    """

    variable: str
    """The variable that tells the agent where its home is."""
    config_dir: str
    """The agent's directory inside a home."""
    settings_file: str | None = None
    """The settings file inside ``config_dir``, merged from the user's and the switches."""
    switches: Mapping[str, object] = field(default_factory=dict)
    routed_switches: Mapping[str, object] = field(default_factory=dict)
    """Added when the agent's model traffic is routed to a URL."""
    directory: str = "home"
    """The home's name in the preset's directory."""
    user_default: str = "~"
    """The user's home for the agent when the variable is not set; ``~`` is the home directory."""
    link_home: bool = False
    """Link the user's other entries of the home too (besides ``config_dir``): for a variable that the
    commands the agent runs inherit (``XDG_CONFIG_HOME``), so that theirs (git, say) still find them."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Written into ``config_dir`` (name → content) in place of the user's entries of those names."""
    unlinked: tuple[str, ...] = ()
    """Entries of the user's ``config_dir`` that are not linked."""
    directories: tuple[str, ...] = ()
    """Directories ``config_dir`` must have: the user's linked if they have one, else made empty."""


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    description: str
    packages: tuple[str, ...]
    """Pinned npm packages, ``name@version``; the first is the one whose version is reported."""
    program: str
    """The program inside the install directory, relative to it."""
    path_command: str
    """The program's name on PATH, used when acpd has not installed the preset."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    """Always set. ``{dir}`` stands for the preset's directory in acpd's agents directory."""
    installed_env: Mapping[str, str] = field(default_factory=dict)
    """Set only when acpd installed the preset (they name files of that install)."""
    root_env: Mapping[str, str] = field(default_factory=dict)
    """Set only when the daemon runs as root."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Files the daemon writes into the preset's directory before starting it: name → content."""
    home: Home | None = None
    dynamic_env: Callable[[Mapping[str, str]], _Env] | None = None
    """Environment computed from the daemon's own (to merge with a user's setting, say)."""
    credential_variables: tuple[str, ...] = ()
    """Any one of these set in the environment counts as credentials."""
    credential_files: tuple[str, ...] = ()
    """Any one of these existing counts too; ``~`` is the home directory."""
    route_model: ModelRoute | None = None
    continue_sessions: bool = True
    """False when the agent's own session/load is not to be trusted (acpd carries the transcript)."""
    exits_on_stdin_close: bool = True
    """False when the agent keeps running after its stdin ends (it is sent SIGTERM at once)."""
    stop_detached_on_cancel: bool = True
    """False when the agent stops its own commands on cancel and detaches some on purpose."""
    client_capabilities: Mapping[str, object] = field(default_factory=dict)
    """What acpd offers the agent at ``initialize``, in ACP's ``clientCapabilities`` shape; what
    it leaves out is offered (acpd's workspace-confined file reads and writes, and terminals)."""
    sandbox: Sandbox | None = None
    needs_node: bool = True
    notes: str = ""


def _first_key(env: Mapping[str, str], *names: str) -> str:
    return next((env[name] for name in names if env.get(name)), PLACEHOLDER_KEY)


def _claude_route(url: str, env: Mapping[str, str]) -> tuple[_Env, tuple[str, ...]]:
    extra = {"ANTHROPIC_BASE_URL": url.rstrip("/")}  # Claude Code adds /v1 itself
    if not (env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN")):
        extra["ANTHROPIC_API_KEY"] = PLACEHOLDER_KEY
    return extra, ()


def _codex_route(url: str, env: Mapping[str, str]) -> tuple[_Env, tuple[str, ...]]:
    # OPENAI_BASE_URL is ignored by Codex's built-in provider (it opens a WebSocket to the cloud),
    # so the URL goes in a provider of our own, over plain HTTP SSE (the Responses API).
    provider = "model_providers.acpd"
    settings = {
        "model_provider": "acpd",
        f"{provider}.name": "acpd",
        f"{provider}.base_url": f"{url.rstrip('/')}/v1",
        f"{provider}.env_key": MODEL_KEY_VARIABLE,
        f"{provider}.wire_api": "responses",
    }
    args = tuple(arg for key, value in settings.items() for arg in ("-c", f"{key}={json.dumps(value)}"))
    return {MODEL_KEY_VARIABLE: _first_key(env, MODEL_KEY_VARIABLE, "OPENAI_API_KEY", "CODEX_API_KEY")}, args


def _gemini_route(url: str, env: Mapping[str, str]) -> tuple[_Env, tuple[str, ...]]:
    return {
        "GOOGLE_GEMINI_BASE_URL": url.rstrip("/"),
        "GEMINI_API_KEY": _first_key(env, "GEMINI_API_KEY", "GOOGLE_API_KEY"),
    }, ()


GEMINI_SWITCHES: Final[Mapping[str, object]] = {
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}
"""Gemini's settings that keep it on loopback (usage statistics go to play.googleapis.com)."""
GEMINI_ROUTED_SWITCHES: Final[Mapping[str, object]] = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
"""With its model traffic routed to a URL: the auth method that goes with a key."""


def _opencode_route(url: str, env: Mapping[str, str]) -> tuple[_Env, tuple[str, ...]]:
    key = _first_key(env, "ANTHROPIC_API_KEY")
    config = _opencode_config(env)
    providers = config.get("provider")
    providers = dict(providers) if isinstance(providers, dict) else {}
    anthropic = providers.get("anthropic")
    anthropic = dict(anthropic) if isinstance(anthropic, dict) else {}
    options = anthropic.get("options")
    options = dict(options) if isinstance(options, dict) else {}
    options.update(baseURL=f"{url.rstrip('/')}/v1", apiKey=key)
    config["provider"] = {**providers, "anthropic": {**anthropic, "options": options}}
    model = config.get("model")
    if not (isinstance(model, str) and model.startswith("anthropic/")):
        # The URL serves the Anthropic API: a model of another provider would go to that provider.
        config["model"] = OPENCODE_ROUTED_MODEL
    return {"OPENCODE_CONFIG_CONTENT": json.dumps(config)}, ()


OPENCODE_ROUTED_MODEL: Final = "anthropic/claude-sonnet-4-5"
"""opencode's model when its traffic is routed and the user's inline config names no Anthropic
one: the URL serves the Anthropic Messages API."""


def _opencode_env(env: Mapping[str, str]) -> _Env:
    return {"OPENCODE_CONFIG_CONTENT": json.dumps(_opencode_config(env))}


def _opencode_config(env: Mapping[str, str], **extra: object) -> dict[str, object]:
    """opencode's inline config: the user's own (if any) with our switches on top."""
    try:
        config = json.loads(env.get("OPENCODE_CONFIG_CONTENT") or "{}")
    except ValueError:
        config = {}
    if not isinstance(config, dict):
        config = {}
    return {**config, "autoupdate": False, "share": "disabled", **extra}


OPENCODE_VERSION: Final = "1.18.33"
OPENCODE_PLUGIN_LOCK: Final = (
    json.dumps(
        {
            "name": "opencode-config",
            "lockfileVersion": 3,
            "requires": True,
            "packages": {"": {"dependencies": {"@opencode-ai/plugin": OPENCODE_VERSION}}},
        },
        indent=2,
    )
    + "\n"
)
"""The lock file of acpd's copy of opencode's config directory. On every start opencode 1.18 installs
``@opencode-ai/plugin`` from the npm registry into each of its config directories it can write to,
``--pure`` or not, unless the directory has a ``node_modules`` and a ``package-lock.json`` whose root
package lists every dependency of its ``package.json`` and that one (versions are not compared)."""


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)


PRESETS: Final[Mapping[str, Preset]] = {
    preset.name: preset
    for preset in (
        Preset(
            name="claude",
            description="Claude Code through claude-agent-acp (runs the native Claude Code CLI)",
            packages=("@zed-industries/claude-agent-acp@0.23.1", "@anthropic-ai/claude-code@2.1.330"),
            program="node_modules/.bin/claude-agent-acp",
            path_command="claude-agent-acp",
            env={
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_TELEMETRY": "1",
                "DISABLE_ERROR_REPORTING": "1",
                "DISABLE_AUTOUPDATER": "1",
                "DISABLE_BUG_COMMAND": "1",
            },
            # Without it the SDK runs its bundled JavaScript CLI, which fetches a plugin blocklist
            # from the internet whatever the traffic switch says.
            installed_env={"CLAUDE_CODE_EXECUTABLE": "{dir}/node_modules/@anthropic-ai/claude-code/bin/claude.exe"},
            # Claude Code refuses to skip permission prompts as root otherwise.
            root_env={"IS_SANDBOX": "1"},
            exits_on_stdin_close=False,
            # Claude Code runs every command in a session of its own, background servers included,
            # and stops the running one itself on cancel.
            stop_detached_on_cancel=False,
            credential_variables=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
            credential_files=("~/.claude/.credentials.json",),
            route_model=_claude_route,
        ),
        Preset(
            name="codex",
            description="OpenAI Codex through codex-acp (the native binary)",
            packages=("@zed-industries/codex-acp@0.16.0",),
            # The npm launcher forwards no signals; the native binary is started directly.
            program=f"node_modules/@zed-industries/codex-acp-linux-{_arch()}/bin/codex-acp",
            path_command="codex-acp",
            args=("-c", "analytics.enabled=false", "-c", "features.plugins=false"),
            # codex-acp ignores $OPENAI_API_KEY until a client authenticates; acpd does not, so only
            # a login (``codex login``) or a model URL counts.
            credential_files=("~/.codex/auth.json",),
            route_model=_codex_route,
            # codex-acp's default (workspace-write) runs every command under bubblewrap and panics
            # (exit 101) on each one when there is none.
            sandbox=Sandbox(
                program="bwrap",
                install="install bubblewrap (Debian: apt install bubblewrap)",
                bundled="codex-resources/bwrap",
                setting="sandbox_mode",
                off="danger-full-access",
                config_file="~/.codex/config.toml",
                home_variable="CODEX_HOME",
            ),
            exits_on_stdin_close=False,
            needs_node=False,
        ),
        Preset(
            name="gemini",
            description="Google Gemini CLI in ACP mode (gemini --acp)",
            packages=("@google/gemini-cli@0.61.0",),
            program="node_modules/.bin/gemini",
            path_command="gemini",
            args=("--acp",),
            env={"GEMINI_TELEMETRY_ENABLED": "false"},
            # gemini-cli 0.61 ignores a system settings file that it or a directory above it is
            # not owned by root or is writable by others (a user's data directory, the temp dir):
            # the switches go in a user settings file of acpd's, in a home of its own.
            home=Home(
                variable="GEMINI_CLI_HOME",
                config_dir=".gemini",
                settings_file="settings.json",
                switches=GEMINI_SWITCHES,
                routed_switches=GEMINI_ROUTED_SWITCHES,
            ),
            credential_variables=("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS"),
            credential_files=("~/.gemini/oauth_creds.json",),
            route_model=_gemini_route,
            # gemini-cli 0.61 reads a file through the client before writing it and takes the "not
            # found" answer for a new file as a failure: it reads with its own tools (confined to
            # the session's workspace by gemini itself) and writes through acpd.
            client_capabilities={"fs": {"readTextFile": False}},
            # gemini-cli 0.61's session/load fails and overwrites the chat it was asked to load.
            continue_sessions=False,
        ),
        Preset(
            name="opencode",
            description="opencode in ACP mode (opencode acp --pure)",
            packages=(f"opencode-ai@{OPENCODE_VERSION}",),
            program="node_modules/.bin/opencode",
            path_command="opencode",
            # --pure: no plugins, which opencode would otherwise fetch from the npm registry.
            args=("acp", "--pure"),
            # Its global config directory is $XDG_CONFIG_HOME/opencode and no switch stops the plugin
            # install into it (OPENCODE_PLUGIN_LOCK): the variable points at a directory of acpd's
            # holding the lock file that makes opencode skip the install, the user's opencode
            # entries linked, and every other entry of their $XDG_CONFIG_HOME linked too (the
            # commands opencode runs inherit the variable). node_modules is the user's if they have
            # one: the custom tools in their config import the plugin from it.
            home=Home(
                variable="XDG_CONFIG_HOME",
                config_dir="opencode",
                directory="xdg",
                user_default="~/.config",
                link_home=True,
                files={"package-lock.json": OPENCODE_PLUGIN_LOCK},
                unlinked=("package.json",),
                directories=("node_modules",),
            ),
            env={
                "OPENCODE_DISABLE_MODELS_FETCH": "1",
                "OPENCODE_DISABLE_AUTOUPDATE": "1",
                "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
                "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
                "OPENCODE_DISABLE_SHARE": "1",
                "OPENCODE_DISABLE_CLAUDE_CODE": "1",
                "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
            },
            dynamic_env=_opencode_env,
            credential_variables=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"),
            credential_files=("~/.local/share/opencode/auth.json",),
            route_model=_opencode_route,
            needs_node=False,
            notes="opencode acp also probes 127.0.0.1:4096, its own server's default port",
        ),
    )
}


def preset_program(preset: Preset, agents_dir: Path) -> Path:
    return preset_dir(preset, agents_dir) / preset.program


def preset_dir(preset: Preset, agents_dir: Path) -> Path:
    return agents_dir / preset.name


def preset_env(preset: Preset, agents_dir: Path, *, root: bool, installed: bool) -> _Env:
    """The variables a preset sets whatever the environment; ``{dir}`` filled in."""
    extra = {**preset.env}
    if installed:
        extra.update(preset.installed_env)
    if root:
        extra.update(preset.root_env)
    return fill_dir(extra, preset_dir(preset, agents_dir))


def fill_dir(values: Mapping[str, str], directory: Path) -> _Env:
    return {name: value.replace("{dir}", str(directory)) for name, value in values.items()}
