"""API layer (shared): the pydantic models of acpd's public HTTP surface, one source of truth.

The daemon validates request bodies and shapes responses with them, the OpenAPI spec is generated from
them, and the Python client ``acpd.client`` parses what it receives into them. It must not import the
daemon, the adapters or anything that runs: only pydantic, the ACP schema models and ``acpd.protocol``.
"""
