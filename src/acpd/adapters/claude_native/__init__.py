"""Adapters layer: claude-native, a Claude agent loop inside acpd on the official ``anthropic`` SDK.

Nothing outside this package may import its modules but the backend registry (``backend``, when a
claude-native session is built) and the daemon's agent facts (``credentials``, which does not load
the SDK).
"""
