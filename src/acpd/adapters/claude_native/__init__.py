"""Adapters layer: claude-native, a Claude agent loop inside acpd on the official ``anthropic`` SDK.

Nothing outside this package may import its modules but the backend registry and the daemon's agent
facts (through ``backend``).
"""
