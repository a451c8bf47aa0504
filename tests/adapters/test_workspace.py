"""Workspace: fs access confined to the session's directories, and the ACP fs/* shapes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acpd.adapters.workspace import MAX_READ_BYTES, Workspace
from acpd.errors import INVALID_PARAMS, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND, RpcError

pytestmark = pytest.mark.anyio


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("secret\n")
    return path.resolve()


def test_relative_paths_are_refused(workspace: Workspace) -> None:
    with pytest.raises(RpcError) as caught:
        workspace.resolve("notes.txt")
    assert caught.value.code == INVALID_PARAMS
    assert "notes.txt" in caught.value.data["detail"]


def test_dot_dot_cannot_climb_out_of_the_root(workspace: Workspace, root: Path, outside: Path) -> None:
    with pytest.raises(RpcError) as caught:
        workspace.resolve(f"{root}/../outside/secret.txt")
    detail = caught.value.data["detail"]
    assert caught.value.code == INVALID_PARAMS
    assert "outside the session's directories" in detail
    assert str(root) in detail


def test_dot_dot_after_a_missing_directory_cannot_climb_out(workspace: Workspace, root: Path) -> None:
    with pytest.raises(RpcError):
        workspace.resolve(f"{root}/missing/../../outside/new.txt")


def test_dot_dot_that_stays_inside_is_allowed(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve(f"{root}/a/../b.txt") == root / "b.txt"


async def test_a_symlinked_directory_pointing_out_is_refused_for_reads_and_writes(
    workspace: Workspace, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RpcError) as read_error:
        await workspace.read_text(f"{root}/link/secret.txt")
    with pytest.raises(RpcError) as write_error:
        await workspace.write_text(f"{root}/link/new.txt", "x")
    assert read_error.value.code == write_error.value.code == INVALID_PARAMS
    assert "resolves to" in read_error.value.data["detail"]
    assert not (outside / "new.txt").exists()


async def test_a_symlinked_file_pointing_out_is_refused(workspace: Workspace, root: Path, outside: Path) -> None:
    (root / "secret-link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(RpcError):
        await workspace.read_text(f"{root}/secret-link.txt")
    with pytest.raises(RpcError):
        await workspace.write_text(f"{root}/secret-link.txt", "overwritten")
    assert (outside / "secret.txt").read_text() == "secret\n"


async def test_a_second_root_is_readable_and_writable(root: Path, outside: Path) -> None:
    workspace = Workspace([root, outside])
    assert await workspace.read_text(str(outside / "secret.txt")) == "secret\n"
    await workspace.write_text(str(outside / "new.txt"), "ok")
    assert (outside / "new.txt").read_text() == "ok"


async def test_line_and_limit_select_lines(workspace: Workspace, root: Path) -> None:
    path = root / "lines.txt"
    path.write_text("one\ntwo\nthree\nfour\n")
    assert await workspace.read_text(str(path), line=2, limit=2) == "two\nthree\n"
    assert await workspace.read_text(str(path), line=4) == "four\n"
    assert await workspace.read_text(str(path), limit=1) == "one\n"
    assert await workspace.read_text(str(path), line=9) == ""
    assert await workspace.read_text(str(path)) == "one\ntwo\nthree\nfour\n"


async def test_lines_split_only_on_newline(workspace: Workspace, root: Path) -> None:
    path = root / "odd.txt"
    path.write_bytes("a\rb\u2028c\nd".encode())
    assert await workspace.read_text(str(path), line=2, limit=1) == "d"


async def test_line_zero_is_refused(workspace: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("a")
    with pytest.raises(RpcError) as caught:
        await workspace.read_text(str(root / "a.txt"), line=0)
    assert caught.value.code == INVALID_PARAMS


async def test_write_creates_parent_directories_and_leaves_no_temporary_file(workspace: Workspace, root: Path) -> None:
    target = root / "src" / "pkg" / "mod.py"
    await workspace.write_text(str(target), "print('é')\n")
    assert target.read_text(encoding="utf-8") == "print('é')\n"
    assert os.listdir(target.parent) == ["mod.py"]


async def test_write_replaces_an_existing_file_keeping_its_mode(workspace: Workspace, root: Path) -> None:
    script = root / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    inode_before = script.stat().st_ino
    await workspace.write_text(str(script), "new")
    assert script.read_text() == "new"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.stat().st_ino != inode_before  # replaced by rename, not rewritten in place


async def test_a_missing_file_is_resource_not_found(workspace: Workspace, root: Path) -> None:
    with pytest.raises(RpcError) as caught:
        await workspace.read_text(str(root / "nope.txt"))
    assert caught.value.code == RESOURCE_NOT_FOUND == -32002


async def test_reading_a_directory_is_invalid_params(workspace: Workspace, root: Path) -> None:
    with pytest.raises(RpcError) as caught:
        await workspace.read_text(str(root))
    assert caught.value.code == INVALID_PARAMS
    assert "directory" in caught.value.data["detail"]


async def test_writing_over_a_directory_is_invalid_params(workspace: Workspace, root: Path) -> None:
    (root / "dir").mkdir()
    with pytest.raises(RpcError) as caught:
        await workspace.write_text(str(root / "dir"), "x")
    assert caught.value.code == INVALID_PARAMS


async def test_a_file_that_is_not_utf8_is_invalid_params(workspace: Workspace, root: Path) -> None:
    (root / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(RpcError) as caught:
        await workspace.read_text(str(root / "latin1.txt"))
    assert caught.value.code == INVALID_PARAMS
    assert "UTF-8" in caught.value.data["detail"]


async def test_a_fifo_is_refused_without_blocking(workspace: Workspace, root: Path) -> None:
    os.mkfifo(root / "pipe")
    with pytest.raises(RpcError) as caught:
        await workspace.read_text(str(root / "pipe"))
    assert caught.value.code == INVALID_PARAMS


async def test_files_over_the_size_limit_are_refused(workspace: Workspace, root: Path) -> None:
    big = root / "big.log"
    with big.open("wb") as file:
        file.truncate(MAX_READ_BYTES + 1)  # sparse: nothing is really written
    with pytest.raises(RpcError) as caught:
        await workspace.read_text(str(big))
    assert caught.value.code == INVALID_PARAMS
    assert str(MAX_READ_BYTES) in caught.value.data["detail"]


async def test_handle_serves_the_acp_fs_methods(workspace: Workspace, root: Path) -> None:
    path = str(root / "notes" / "a.md")
    written = await workspace.handle("fs/write_text_file", {"sessionId": "s", "path": path, "content": "x\ny\n"})
    read = await workspace.handle("fs/read_text_file", {"sessionId": "s", "path": path, "line": 2, "limit": None})
    assert written == {}
    assert read == {"content": "y\n"}


async def test_handle_refuses_bad_params_and_other_methods(workspace: Workspace, root: Path) -> None:
    with pytest.raises(RpcError) as bad_line:
        await workspace.handle("fs/read_text_file", {"path": str(root / "a"), "line": "2"})
    with pytest.raises(RpcError) as no_content:
        await workspace.handle("fs/write_text_file", {"path": str(root / "a")})
    with pytest.raises(RpcError) as other:
        await workspace.handle("fs/delete", {"path": str(root / "a")})
    assert bad_line.value.code == no_content.value.code == INVALID_PARAMS
    assert other.value.code == METHOD_NOT_FOUND


def test_a_path_with_a_nul_byte_is_invalid_params(workspace: Workspace, root: Path) -> None:
    with pytest.raises(RpcError) as caught:
        workspace.resolve(f"{root}/a\0b")
    assert caught.value.code == INVALID_PARAMS


async def test_writing_below_a_file_is_invalid_params(workspace: Workspace, root: Path) -> None:
    (root / "file.txt").write_text("x")
    with pytest.raises(RpcError) as caught:
        await workspace.write_text(str(root / "file.txt" / "child.txt"), "y")
    assert caught.value.code == INVALID_PARAMS
