"""Public test kit: the scripted mock ACP agent, the mock model server (Anthropic Messages, OpenAI
Responses and Chat Completions, Gemini) and a real-daemon launcher for end-to-end tests.

Only the CLI (``acpd mock-agent``, ``acpd mock-model``) imports it; the layers below never do
(import-linter checks).
"""
