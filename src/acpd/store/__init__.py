"""Store layer: per-session event logs and session documents. Imports only the protocol layer."""

from acpd.store.base import EventStore, SessionDoc, SessionPage
from acpd.store.memory import MemoryEventStore
from acpd.store.sqlite import SqliteEventStore

__all__ = ["EventStore", "MemoryEventStore", "SessionDoc", "SessionPage", "SqliteEventStore"]
