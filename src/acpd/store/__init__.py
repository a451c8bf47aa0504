"""Store layer: per-session event logs and session documents. Imports only the protocol layer."""

from acpd.store.base import EventStore, SessionDoc, SessionPage

__all__ = ["EventStore", "SessionDoc", "SessionPage"]
