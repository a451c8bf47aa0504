"""Adapters layer: one module per backend kind; each turns a backend into ACP frames for a session host.

Must not import the daemon: adapters talk to it only through the ``SessionHost`` Protocol in ``base``.
"""
