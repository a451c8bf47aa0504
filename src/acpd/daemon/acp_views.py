"""Daemon layer: what an ACP client sees of a session: pure functions from documents and records.

The ACP face turns a session document into ``session/new``-style answers (modes, config options
with acpd's own ``agent`` option first, ``session/list`` entries) and event records into the
notifications a client receives live or during ``session/load``. No I/O, no state; it must not
talk to a backend, a store or a transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from acpd.protocol import jsonio, jsonrpc, methods
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject, object_of, objects_in

if TYPE_CHECKING:
    from acpd.config import AgentConfig

AGENT_OPTION_ID: Final = "agent"
AGENT_OPTION_CATEGORY: Final = "_acpd/agent"
"""A custom category: ACP leaves ``_``-prefixed category names free for extensions."""
SETTING_FOR_CATEGORY: Final = {"mode": "mode", "model": "model", "thought_level": "thoughtLevel"}
"""The session field an agent's config option of each ACP category sets."""

Forward = Literal["notify", "permission", "skip"]


def agent_option(current: str, agents: Mapping[str, AgentConfig]) -> JsonObject:
    """The ``agent`` config option: any ACP client can switch backends from its config picker."""
    choices = [{"value": name, "name": name, "description": _describe(agent)} for name, agent in sorted(agents.items())]
    return {
        "id": AGENT_OPTION_ID,
        "name": "Agent",
        "description": "The agent acpd runs for this session; switching keeps the transcript",
        "category": AGENT_OPTION_CATEGORY,
        "type": "select",
        "currentValue": current,
        "options": choices,
    }


def _describe(agent: AgentConfig) -> str:
    return " ".join([agent.command, *agent.args])[:200]


CATEGORY_FOR_SETTING: Final = {setting: category for category, setting in SETTING_FOR_CATEGORY.items()}


def offered_values(doc: Mapping[str, object], setting: str) -> list[str] | None:
    """The values the session's agent offers for ``model``, ``mode`` or ``thoughtLevel``: from its
    config option of that category, else from its ``modes`` / legacy ``models`` lists. None when it
    offers no such setting; ``[]`` when it does not say which values it takes."""
    category = CATEGORY_FOR_SETTING[setting]
    for option in objects_in(doc.get("configOptions")):
        if option.get("category") == category:
            return select_values(option)
    modes, models = doc.get("modes"), doc.get("models")
    if setting == "mode" and isinstance(modes, dict):
        return [str(m["id"]) for m in objects_in(modes.get("availableModes")) if isinstance(m.get("id"), str)]
    if setting == "model" and isinstance(models, dict):
        listed = objects_in(models.get("availableModels"))
        return [str(m["modelId"]) for m in listed if isinstance(m.get("modelId"), str)]
    return None


def select_values(option: JsonObject) -> list[str]:
    """The values of a ``select`` config option, its groups flattened; ``[]`` for other types."""
    if option.get("type") != "select":
        return []
    values: list[str] = []
    for item in objects_in(option.get("options")):
        if isinstance(item.get("value"), str):
            values.append(item["value"])
        values += [v["value"] for v in objects_in(item.get("options")) if isinstance(v.get("value"), str)]
    return values


def config_options(doc: Mapping[str, object], agents: Mapping[str, AgentConfig]) -> list[JsonObject]:
    """acpd's ``agent`` option, then the backend's own options (a backend option named ``agent``
    is hidden: acpd's wins, since it is the one the daemon can act on)."""
    own = [o for o in objects_in(doc.get("configOptions")) if o.get("id") != AGENT_OPTION_ID]
    return [agent_option(str(doc.get("agent")), agents), *own]


def session_state(doc: Mapping[str, object], agents: Mapping[str, AgentConfig]) -> JsonObject:
    """The ``modes`` / ``configOptions`` (and legacy ``models``) of new, load and resume answers."""
    state: JsonObject = {"configOptions": config_options(doc, agents)}
    modes = doc.get("modes")
    if isinstance(modes, dict):
        current = doc.get("mode") or modes.get("currentModeId")
        state["modes"] = {**modes, "currentModeId": current}
    models = doc.get("models")
    if isinstance(models, dict):
        # removed from the v1 schema, still read by editors talking to claude/codex adapters
        state["models"] = {**models, "currentModelId": doc.get("model") or models.get("currentModelId")}
    return state


def session_info(doc: Mapping[str, object]) -> JsonObject:
    """One ``session/list`` entry; acpd's extra facts go in ``_meta`` (no custom root fields)."""
    info: JsonObject = {
        "sessionId": doc.get("id"),
        "cwd": doc.get("cwd"),
        "title": doc.get("title"),
        "updatedAt": doc.get("updatedAt"),
        "_meta": {
            "acpd": {
                "agent": doc.get("agent"),
                "status": doc.get("status"),
                "createdAt": doc.get("createdAt"),
                "turns": doc.get("turns"),
            }
        },
    }
    dirs = doc.get("additionalDirectories")
    if isinstance(dirs, list) and dirs:
        info["additionalDirectories"] = dirs
    return info


def update_notification(session_id: str, update: JsonObject) -> JsonObject:
    return jsonrpc.notification(methods.SESSION_UPDATE, {"sessionId": session_id, "update": update})


def user_message_updates(session_id: str, prompt: object) -> list[JsonObject]:
    """A prompt as the ``user_message_chunk`` notifications other clients (and load) replay."""
    return [
        update_notification(session_id, {"sessionUpdate": "user_message_chunk", "content": block})
        for block in objects_in(prompt)
    ]


@dataclass(frozen=True, slots=True)
class Frame:
    """A record as an ACP client should receive it."""

    action: Forward
    messages: tuple[JsonObject, ...] = ()


SKIP: Final = Frame("skip")


def client_frame(
    record: EventRecord,
    *,
    link_id: str | None,
    replay: bool,
    agent_option_for: AgentOptionSource,
) -> Frame:
    """What one logged frame becomes for an attached client.

    Agent ``session/update``s pass through untouched (unknown variants and ``_meta`` included),
    except that a ``config_option_update`` lacking acpd's ``agent`` option gets it. Prompts become
    ``user_message_chunk``s for everyone but the client that sent them (and for everyone during
    ``session/load``). ``_acpd/`` notifications are extension notifications, which clients ignore
    if they do not know them; they are not replayed. Permission requests are asked live only.
    """
    method, message = parse_frame(record)
    if method is None:
        return SKIP
    if method == methods.SESSION_UPDATE:
        return Frame("notify", (_with_agent_option(message, agent_option_for),))
    if method == methods.SESSION_PROMPT and record.sender == "client":
        params = object_of(message.get("params"))
        if not replay and _origin(params) == link_id:
            return SKIP
        return Frame("notify", tuple(user_message_updates(record.session_id, params.get("prompt"))))
    if method == methods.SESSION_REQUEST_PERMISSION:
        return SKIP if replay else Frame("permission", (message,))
    if method.startswith("_acpd/") and "id" not in message and not replay:
        return Frame("notify", (message,))
    return SKIP


STORED_UPDATE_PREFIX: Final = '{"jsonrpc":"2.0","method":"session/update",'
"""How a ``session/update`` the daemon logged starts (its encoder keeps the key order)."""


def forwards_as_stored(record: EventRecord) -> bool:
    """True when a live client receives the record's stored text unchanged: a ``session/update``
    that is not a ``config_option_update`` (which gets acpd's ``agent`` option). The test costs two
    substring searches, so the many chunks of a turn are forwarded without a parse or an encode."""
    payload = record.payload
    return payload.startswith(STORED_UPDATE_PREFIX) and '"config_option_update"' not in payload


class AgentOptionSource:
    """The current ``agent`` option of a session, computed on demand (it changes with switches)."""

    def __init__(self, doc: Mapping[str, object], agents: Mapping[str, AgentConfig]) -> None:
        self._doc = doc
        self._agents = agents

    def __call__(self) -> JsonObject:
        return agent_option(str(self._doc.get("agent")), self._agents)


def _origin(params: JsonObject) -> object:
    acpd = object_of(params.get("_meta")).get("acpd")
    return object_of(acpd).get("origin")


def _with_agent_option(message: JsonObject, agent_option_for: AgentOptionSource) -> JsonObject:
    params = object_of(message.get("params"))
    update = params.get("update")
    if not isinstance(update, dict) or update.get("sessionUpdate") != "config_option_update":
        return message
    options = objects_in(update.get("configOptions"))
    if any(o.get("id") == AGENT_OPTION_ID and o.get("category") == AGENT_OPTION_CATEGORY for o in options):
        return message
    own = [o for o in options if o.get("id") != AGENT_OPTION_ID]
    new_update = {**update, "configOptions": [agent_option_for(), *own]}
    return {**message, "params": {**params, "update": new_update}}


def parse_frame(record: EventRecord) -> tuple[str | None, JsonObject]:
    """A record's method (None for responses) and its message."""
    if '"method"' not in record.payload:  # cheap pre-check: responses carry no method
        return None, {}
    message = jsonio.loads(record.payload)
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None, {}
    return str(message["method"]), message
