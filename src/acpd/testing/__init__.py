"""Public test kit: the scripted mock ACP agent and a real-daemon launcher for end-to-end tests.

Only the CLI (``acpd mock-agent``) imports it; the layers below never do (import-linter checks).
"""
