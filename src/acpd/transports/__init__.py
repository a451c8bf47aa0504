"""Transports layer: move framed JSON messages; know no methods. Imports only the protocol layer."""

from acpd.transports.base import Transport

__all__ = ["Transport"]
