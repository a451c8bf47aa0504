"""Protocol layer: ACP v1 method names, the headers of ACP's remote transport, and acpd's own
``_acpd/`` frame names. Pure constants."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
CONNECTION_HEADER: Final = "Acp-Connection-Id"
"""ACP's remote transport (Streamable HTTP): the connection a message or stream is for."""
SESSION_HEADER: Final = "Acp-Session-Id"
"""ACP's remote transport: the session a message or stream is for."""

# client -> agent
INITIALIZE: Final = "initialize"
AUTHENTICATE: Final = "authenticate"
LOGOUT: Final = "logout"
SESSION_NEW: Final = "session/new"
SESSION_LOAD: Final = "session/load"
SESSION_LIST: Final = "session/list"
SESSION_RESUME: Final = "session/resume"
SESSION_FORK: Final = "session/fork"
SESSION_CLOSE: Final = "session/close"
SESSION_DELETE: Final = "session/delete"
SESSION_PROMPT: Final = "session/prompt"
SESSION_CANCEL: Final = "session/cancel"
SESSION_SET_MODE: Final = "session/set_mode"
SESSION_SET_CONFIG_OPTION: Final = "session/set_config_option"
SESSION_SET_MODEL: Final = "session/set_model"
CANCEL_REQUEST: Final = "$/cancel_request"

# agent -> client
SESSION_UPDATE: Final = "session/update"
SESSION_REQUEST_PERMISSION: Final = "session/request_permission"
FS_READ_TEXT_FILE: Final = "fs/read_text_file"
FS_WRITE_TEXT_FILE: Final = "fs/write_text_file"
TERMINAL_CREATE: Final = "terminal/create"
TERMINAL_OUTPUT: Final = "terminal/output"
TERMINAL_WAIT_FOR_EXIT: Final = "terminal/wait_for_exit"
TERMINAL_KILL: Final = "terminal/kill"
TERMINAL_RELEASE: Final = "terminal/release"

# acpd's own frames in a session's event log (sender "daemon"); each is documented in the README
ACPD_AGENT_STARTED: Final = "_acpd/agent_started"
ACPD_AGENT_EXITED: Final = "_acpd/agent_exited"
ACPD_ERROR: Final = "_acpd/error"
ACPD_SETTINGS_CHANGED: Final = "_acpd/settings_changed"
ACPD_LIMIT_REACHED: Final = "_acpd/limit_reached"
ACPD_TURN_INTERRUPTED: Final = "_acpd/turn_interrupted"
ACPD_CONTEXT_CARRIED: Final = "_acpd/context_carried"
ACPD_SESSION_EVICTED: Final = "_acpd/session_evicted"
ACPD_FORKED_FROM: Final = "_acpd/forked_from"
ACPD_WARM_UP: Final = "_acpd/warm_up"

# acpd's extension methods on its ACP face (requests from a client): the session records
ACPD_SESSION_EXPORT: Final = "_acpd/session/export"
ACPD_SESSION_IMPORT: Final = "_acpd/session/import"
ACPD_SESSION_UPDATE: Final = "_acpd/session/update"
ACPD_SESSION_TURNS: Final = "_acpd/session/turns"
ACPD_AUDIT_TOOL_CALLS: Final = "_acpd/audit/tool_calls"
ACPD_AUDIT_STATS: Final = "_acpd/audit/stats"
ACPD_USAGE: Final = "_acpd/usage"

# acpd's own request between daemons sharing a database: a client link (daemon/client_links.py)
ACPD_CLIENT_LINK: Final = "_acpd/client_link"
