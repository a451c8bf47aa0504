"""Adapters layer: file access for an agent, confined to its session's directories (DESIGN §7).

Serves ACP ``fs/read_text_file`` and ``fs/write_text_file`` for agents the daemon is the client of,
and the same operations as a Python API for built-in tools. Every path is resolved (symlinks and
``..`` included) before it is checked against the roots, so nothing here may read or write outside
them. It must not import the daemon, and it does its file I/O in worker threads, never on the loop.

Errors are ``RpcError``s so they go back to the agent as they are: a path outside the roots, a
relative path, a directory or a file that is not UTF-8 is ``invalid_params``; a missing file is
``resource_not_found`` (-32002).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio.to_thread

from acpd.adapters.params import optional_int_param, str_param
from acpd.errors import RpcError
from acpd.protocol import methods
from acpd.protocol.jsonio import JsonObject, JsonValue

logger = logging.getLogger(__name__)

MAX_READ_BYTES: Final = 16 * 1024 * 1024
"""Largest file ``read_text`` accepts; bigger files are refused rather than loaded into memory."""


class Workspace:
    """The directories one session may touch. The first root is the session's cwd.

    Roots are resolved once, here, so a root given through a symlink (``/tmp`` on macOS) still
    contains the paths that resolve into it.
    """

    def __init__(self, roots: Sequence[str | Path]) -> None:
        if not roots:
            raise ValueError("a workspace needs at least one root")
        self._roots = tuple(Path(os.path.realpath(root)) for root in roots)

    @property
    def roots(self) -> tuple[Path, ...]:
        return self._roots

    @property
    def cwd(self) -> Path:
        return self._roots[0]

    def resolve(self, path: str) -> Path:
        """Resolve an absolute path (symlinks, ``..``) and check it lies inside a root.

        A path that does not exist yet resolves through its nearest existing parent, so a new
        file under a symlink that points out of the roots is refused too. Touches the file
        system: call it from a worker thread when on the event loop.

        Raises:
            RpcError: ``invalid_params`` when the path is relative, malformed or outside every root.
        """
        if not os.path.isabs(path):
            raise RpcError.invalid_params(f"path must be absolute: {path!r}")
        try:
            # strict=False resolves the existing prefix and appends the rest, handling ``..``
            # after a missing component lexically; the result is checked below either way.
            resolved = Path(os.path.realpath(path))
        except (ValueError, OSError) as exc:
            raise RpcError.invalid_params(f"invalid path {path!r}: {exc}") from None
        if not any(resolved.is_relative_to(root) for root in self._roots):
            raise RpcError.invalid_params(self._outside_message(path, resolved))
        return resolved

    async def read_text(self, path: str, *, line: int | None = None, limit: int | None = None) -> str:
        """Read a UTF-8 text file, optionally only ``limit`` lines from 1-based ``line``.

        Raises:
            RpcError: ``resource_not_found`` when the file is missing; ``invalid_params`` when the
                path is refused, names a directory, is not UTF-8 or exceeds ``MAX_READ_BYTES``.
        """
        if line is not None and line < 1:
            raise RpcError.invalid_params(f"line is 1-based, got {line}")
        if limit is not None and limit < 0:
            raise RpcError.invalid_params(f"limit must not be negative, got {limit}")
        text = await anyio.to_thread.run_sync(self._read_sync, path)
        return _slice_lines(text, line, limit)

    async def write_text(self, path: str, content: str) -> None:
        """Replace (or create) a file with ``content`` as UTF-8, creating missing parent directories.

        The write is atomic: readers see the old file or the new one, never a partial file.

        Raises:
            RpcError: ``invalid_params`` when the path is refused or names a directory.
        """
        await anyio.to_thread.run_sync(self._write_sync, path, content)

    async def handle(self, method: str, params: JsonObject) -> JsonValue:
        """Serve one ACP ``fs/*`` request; returns its result object.

        Raises:
            RpcError: bad params, a refused path, or ``method_not_found`` for another method.
        """
        if method == methods.FS_READ_TEXT_FILE:
            path = str_param(params, "path")
            line = optional_int_param(params, "line")
            limit = optional_int_param(params, "limit")
            return {"content": await self.read_text(path, line=line, limit=limit)}
        if method == methods.FS_WRITE_TEXT_FILE:
            await self.write_text(str_param(params, "path"), str_param(params, "content"))
            return {}
        raise RpcError.method_not_found(method)

    def _outside_message(self, path: str, resolved: Path) -> str:
        roots = ", ".join(str(root) for root in self._roots)
        via = "" if str(resolved) == path else f" (it resolves to {str(resolved)!r})"
        return f"path {path!r}{via} is outside the session's directories: {roots}"

    def _read_sync(self, path: str) -> str:
        resolved = self.resolve(path)
        try:
            data = _read_regular_file(path, resolved)
        except OSError as exc:
            raise _os_error(path, exc) from None
        if len(data) > MAX_READ_BYTES:  # grew between fstat and read
            raise RpcError.invalid_params(f"{path!r} is larger than the limit of {MAX_READ_BYTES} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RpcError.invalid_params(f"{path!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def _write_sync(self, path: str, content: str) -> None:
        target = self.resolve(path)
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise RpcError.invalid_params(f"content for {path!r} is not valid Unicode text") from None
        if target.is_dir():
            raise RpcError.invalid_params(f"{path!r} is a directory")
        try:
            # The resolved target lies inside a root, so every missing parent does too.
            target.parent.mkdir(parents=True, exist_ok=True)
            _replace_atomically(target, data)
        except OSError as exc:
            raise _os_error(path, exc) from None


def _read_regular_file(path: str, resolved: Path) -> bytes:
    # O_NONBLOCK so that opening a FIFO cannot hang a worker thread; it is refused after fstat.
    fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK)
    try:
        _check_readable(path, os.fstat(fd))
        with open(fd, "rb", closefd=False) as file:
            return file.read(MAX_READ_BYTES + 1)
    finally:
        os.close(fd)


def _check_readable(path: str, status: os.stat_result) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise RpcError.invalid_params(f"{path!r} is a directory")
    if not stat.S_ISREG(status.st_mode):
        raise RpcError.invalid_params(f"{path!r} is not a regular file")
    if status.st_size > MAX_READ_BYTES:
        raise RpcError.invalid_params(f"{path!r} is {status.st_size} bytes; the limit is {MAX_READ_BYTES}")


def _replace_atomically(target: Path, data: bytes) -> None:
    # The temporary file sits next to the target so the rename stays on one file system.
    # O_EXCL | O_NOFOLLOW: never write through a file someone placed at the temporary name.
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with open(fd, "wb", closefd=True) as file:
            _keep_mode(target, file.fileno())
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _keep_mode(target: Path, fd: int) -> None:
    # An edited script stays executable; a new file gets 0o666 minus the umask from os.open.
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return
    os.fchmod(fd, mode)


def _os_error(path: str, exc: OSError) -> RpcError:
    if isinstance(exc, FileNotFoundError):
        return RpcError.resource_not_found(path)
    if isinstance(exc, IsADirectoryError):
        return RpcError.invalid_params(f"{path!r} is a directory")
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return RpcError.invalid_params(f"{path!r}: a parent of it is not a directory")
    if isinstance(exc, PermissionError):
        return RpcError.invalid_params(f"{path!r}: permission denied")
    logger.warning("file access failed for %s", path, exc_info=exc)
    return RpcError.internal_error(f"{path!r}: {exc.strerror or exc}")


def _slice_lines(text: str, line: int | None, limit: int | None) -> str:
    if line is None and limit is None:
        return text
    # Split on "\n" only: str.splitlines would also break on \r, \f and U+2028 inside a line.
    pieces = text.split("\n")
    start = (line or 1) - 1
    selected = pieces[start:] if limit is None else pieces[start : start + limit]
    out = "\n".join(selected)
    if selected and start + len(selected) < len(pieces):
        out += "\n"  # the last selected line had its newline
    return out
