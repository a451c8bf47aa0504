"""acpd: a local daemon that puts many coding agents behind one ACP surface."""

# Static, not importlib.metadata: the mock agent imports this and starts ~30 ms faster without it.
__version__ = "0.1.0"

__all__ = ["__version__"]
