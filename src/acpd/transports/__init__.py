"""Transports layer: move framed JSON messages; know no methods. Imports only the protocol layer and ``acpd.errors``.

The package imports only ``base`` itself: the process and stdio transports (and the spawn server's
client under the first) are imported from their own modules, when the daemon first starts an agent
or serves stdio. Everything that speaks to a peer imports ``Transport``, and a daemon that has
started nothing yet needs none of the rest.
"""

from __future__ import annotations

from acpd.transports.base import Transport

__all__ = ["Transport"]
