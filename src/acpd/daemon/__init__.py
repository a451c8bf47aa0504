"""Daemon layer: the composition root (sessions, subscriptions, permissions, HTTP). Nothing below imports it."""
