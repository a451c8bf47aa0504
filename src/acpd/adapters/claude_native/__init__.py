"""Adapters layer: claude-native, a Claude agent loop inside acpd on the official ``anthropic`` SDK."""
