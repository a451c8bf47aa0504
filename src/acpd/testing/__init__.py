"""Public test kit: the scripted mock ACP agent and conformance checks. Nothing in the product imports it."""
