"""Daemon layer: a session's warm-up: files and texts given at create that go in front of its first
prompt (the "memory warm-up" of a new session). It reads the files once, at create, inside the
session's directories only; the blocks are recorded in the log (``_acpd/warm_up``) and taken from
there by the first turn, so a restart in between loses nothing. No I/O but reading those files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from acpd.errors import InvalidInput
from acpd.protocol.jsonio import JsonObject

MAX_ITEMS: Final = 32
MAX_FILE_BYTES: Final = 256 * 1024
MAX_TOTAL_CHARS: Final = 1024 * 1024


def warm_up_blocks(items: object, directories: list[str]) -> list[JsonObject]:
    """``context`` of a create body as ACP embedded resources (files, read now) and text blocks,
    each marked as carried context (``_meta.acpd.context``).

    Raises:
        InvalidInput: not a list of ``{"path"}`` or ``{"text"}`` objects; a path outside the
            session's ``directories``, not a regular UTF-8 text file, or too large; too much in all.
    """
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise InvalidInput(f'"context" must be a list of at most {MAX_ITEMS} {{"path"}} or {{"text"}} objects')
    blocks = [_block(item, index, directories) for index, item in enumerate(items)]
    total = sum(len(str(block.get("text") or block.get("resource", {}).get("text", ""))) for block in blocks)
    if total > MAX_TOTAL_CHARS:
        raise InvalidInput(f'"context" holds {total} characters; at most {MAX_TOTAL_CHARS} go in front of a prompt')
    return blocks


def as_prompt_blocks(blocks: list[JsonObject], embedded: bool) -> list[JsonObject]:
    """The warm-up for an agent: embedded resources if it takes them, else each file as text."""
    if embedded:
        return blocks
    return [_as_text(block) if block["type"] == "resource" else block for block in blocks]


def _block(item: object, index: int, directories: list[str]) -> JsonObject:
    where = f'"context"[{index}]'
    if isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str) and item["text"]:
        return {"type": "text", "text": item["text"], "_meta": {"acpd": {"context": True}}}
    if not (isinstance(item, dict) and set(item) == {"path"} and isinstance(item["path"], str) and item["path"]):
        raise InvalidInput(f'{where} must be {{"path": "<file>"}} or {{"text": "<text>"}}')
    path = _inside(item["path"], directories, where)
    text = _read_text(path, where)
    resource = {"uri": path.as_uri(), "mimeType": "text/plain", "text": text}
    return {"type": "resource", "resource": resource, "_meta": {"acpd": {"context": True}}}


def _inside(given: str, directories: list[str], where: str) -> Path:
    """The file, resolved (symlinks too), if it lies inside one of the session's directories."""
    base = Path(directories[0])
    try:
        path = (base / given).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise InvalidInput(f"{where}: no such file {given!r}") from None
    roots = [Path(d).resolve() for d in directories]
    if not any(path.is_relative_to(root) for root in roots):
        raise InvalidInput(f"{where}: {given!r} is outside the session's directories")
    return path


def _read_text(path: Path, where: str) -> str:
    try:
        if not path.is_file():
            raise InvalidInput(f"{where}: {str(path)!r} is not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{where}: {str(path)!r} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"{where}: cannot read {str(path)!r}: {exc.strerror}") from None


def _as_text(block: JsonObject) -> JsonObject:
    resource = block["resource"]
    text = f'<file uri="{resource["uri"]}">\n{resource["text"]}\n</file>'
    return {"type": "text", "text": text, "_meta": block.get("_meta", {})}
