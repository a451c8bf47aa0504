"""Daemon layer: REST request bodies checked against their ``acpd.api.requests`` models, the same
models the OpenAPI spec is generated from. A body that does not fit is the client's mistake:
``InvalidInput`` (400) naming each field and what is wrong with it. No routing, no business rules
(what only the session manager can know, a directory's existence or an agent's models, it checks).

The models are imported at the first body checked, not at start-up: building their validators
takes longer than the daemon takes to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from acpd.errors import InvalidInput
from acpd.protocol.jsonio import JsonObject

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

MAX_ERRORS_SHOWN: Final = 5


def checked(body: JsonObject, model_name: str) -> JsonObject:
    """``body`` itself when it fits the model ``acpd.api.requests.<model_name>``.

    Raises:
        InvalidInput: it does not; the message lists the fields and why.
    """
    from pydantic import ValidationError

    model = _model(model_name)
    try:
        model.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(describe(exc)) from None
    return body


def _model(name: str) -> type[BaseModel]:
    from acpd.api import requests

    model: type[BaseModel] = getattr(requests, name)
    return model


def describe(exc: ValidationError) -> str:
    """The wrong fields (the first few), by their wire names, quoted as the daemon's other messages
    quote them: ``"queue": Input should be a valid boolean``."""
    errors = exc.errors(include_url=False, include_input=False)
    shown = [_one(error) for error in errors[:MAX_ERRORS_SHOWN]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _one(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"] if not _is_union_branch(part))
    if error["type"] == "extra_forbidden":
        return f'unknown field "{where}"'
    return f'"{where}": {error["msg"]}' if where else str(error["msg"])


def _is_union_branch(part: object) -> bool:
    """pydantic names the union member it tried (``str``, ``list[...]``, ``constrained-str``) in ``loc``."""
    return isinstance(part, str) and (part == "str" or "[" in part or part.startswith("constrained-"))
