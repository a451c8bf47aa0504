"""Transports layer: move framed JSON messages; know no methods. Imports only the protocol layer and ``acpd.errors``."""

from acpd.transports.base import Transport
from acpd.transports.process import ProcessSpec, ProcessTransport, open_process_transport
from acpd.transports.stdio import StdioTransport, open_stdio_transport

__all__ = [
    "ProcessSpec",
    "ProcessTransport",
    "StdioTransport",
    "Transport",
    "open_process_transport",
    "open_stdio_transport",
]
