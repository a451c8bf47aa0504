"""Store layer: what the stores read from a session document (its indexed keys, title and
model) and the document as JSON text, encoded once.

The daemon's group commit hands the stores documents already encoded (``EncodedDoc``): a session
log snapshots its document as text when it is saved, and that text is what the database keeps,
never decoded and encoded again on the way. Imports nothing of acpd but the protocol layer and
errors; it must not interpret a document beyond these few keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from acpd.errors import InvalidInput
from acpd.protocol import jsonio
from acpd.store.base import SessionDoc


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The few keys of a session document the stores index; the rest is kept verbatim."""

    id: str
    agent: str
    project: str | None
    cwd: str
    created_at: str
    archived_at: str | None

    @property
    def position(self) -> tuple[str, str]:
        """Where the session sits in the listing order (compared descending)."""
        return (self.created_at, self.id)


def session_keys(doc: SessionDoc) -> SessionKeys:
    """Read the indexed keys of a session document.

    Raises:
        InvalidInput: ``id``, ``agent``, ``cwd`` or ``createdAt`` is missing or not a string, or
            ``project``/``archivedAt`` is neither a string nor null.
    """
    keys = SessionKeys(
        id=_required_str(doc, "id"),
        agent=_required_str(doc, "agent"),
        project=_optional_str(doc, "project"),
        cwd=_required_str(doc, "cwd"),
        created_at=_required_str(doc, "createdAt"),
        archived_at=_optional_str(doc, "archivedAt"),
    )
    if not keys.id:
        raise InvalidInput("a session document's 'id' must not be empty")
    return keys


def _required_str(doc: SessionDoc, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise InvalidInput(f"a session document needs a string {key!r}, got {type(value).__name__}")
    return value


def _optional_str(doc: SessionDoc, key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"a session document's {key!r} must be a string or null, got {type(value).__name__}")
    return value


def encode_doc(doc: SessionDoc) -> str:
    """The session document as JSON text, as both stores keep it.

    Raises:
        InvalidInput: the document is not JSON (a non-string key, an unsupported value).
    """
    try:
        return jsonio.dumps_str(doc)
    except TypeError as exc:
        raise InvalidInput(f"a session document must be JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class EncodedDoc:
    """A session document as JSON text, with what the stores read from it."""

    keys: SessionKeys
    text: str
    title: str | None
    """The session's title, if it has a non-empty one (the search index keeps it)."""
    model: str | None
    """The session's model, if it names one (each ended turn's row keeps it)."""


def encoded_doc(doc: SessionDoc | EncodedDoc) -> EncodedDoc:
    """``doc`` encoded, its keys checked (an ``EncodedDoc`` is returned as it is).

    Raises:
        InvalidInput: an indexed key is missing or mistyped, or the document is not JSON.
    """
    if isinstance(doc, EncodedDoc):
        return doc
    title, model = doc.get("title"), doc.get("model")
    return EncodedDoc(
        keys=session_keys(doc),
        text=encode_doc(doc),
        title=title if isinstance(title, str) and title else None,
        model=model if isinstance(model, str) else None,
    )
