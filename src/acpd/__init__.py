"""acpd: a local daemon that puts many coding agents behind one ACP surface."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("acpd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
