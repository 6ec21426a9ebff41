"""Atomic output: a failed write must never damage or half-replace the user's existing file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.fileio import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    make_folders,
    output_path,
    remove_empty_folders,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_success_replaces_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "book.xlsx"
    target.write_bytes(b"old")
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".book.xlsx.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"new contents")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new contents"
    assert _leftovers(tmp_path) == []


def test_failure_inside_block_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "book.xlsx"
    old = os.urandom(4096)
    target.write_bytes(old)
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("boom")
    assert target.read_bytes() == old
    assert _leftovers(tmp_path) == []


def test_failure_without_existing_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_the_moment_the_temporary_file_exists_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C or SIGTERM can land between the call that creates the temporary file and the code
    that would remove it (seen once in CI: a SIGTERM left `.mnist_metrics.json.*.tmp`). Here the
    creating os.open itself is interrupted right after the file appears."""
    target = tmp_path / "book.xlsx"
    target.write_bytes(b"old")
    real_open = os.open

    def open_then_interrupt(file: str | os.PathLike, flags: int, *args: int) -> int:
        fd = real_open(file, flags, *args)
        if flags & os.O_CREAT:
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt), atomic_output(target):
        pytest.fail("the block must not run")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_missing_folder_is_a_one_line_bpxl_error(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "book.xlsx"
    with pytest.raises(BpxlError, match=r"^cannot write .*book\.xlsx: folder .* does not exist$"):
        atomic_write_bytes(target, b"x")


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BpxlError, match="is not a folder"):
        atomic_write_text(tmp_path / "file" / "out.txt", "y")


def test_target_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "out.xlsx").mkdir()
    with pytest.raises(BpxlError, match="it is a folder"):
        atomic_write_text(tmp_path / "out.xlsx", "y")


def test_unwritable_folder(tmp_path: Path) -> None:
    # Below a regular file nobody can write, root included (a read-only mode would not stop root).
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    with pytest.raises(BpxlError, match="is not a folder"):
        atomic_write_text(plain / "out.txt", "y")
    assert plain.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_modes_respect_umask_and_existing_file(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.txt"
        atomic_write_text(fresh, "a")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # not mkstemp's 0o600
    finally:
        os.umask(old_umask)
    kept = tmp_path / "kept.txt"
    kept.write_text("a")
    kept.chmod(0o604)
    atomic_write_text(kept, "b\nc")
    assert kept.read_text() == "b\nc"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604


def test_output_path_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """Opening a FIFO would block; a device or socket is never a workbook to replace."""
    fifo = tmp_path / "pipe.xlsx"
    os.mkfifo(fifo)
    with pytest.raises(BpxlError, match=r"it is a FIFO \(named pipe\), not a regular file$"):
        atomic_write_text(fifo, "y")
    with pytest.raises(BpxlError, match=r"^cannot write /dev/null: it is a character device"):
        output_path("/dev/null")
    dangling = tmp_path / "dangling.xlsx"
    dangling.symlink_to(tmp_path / "gone.xlsx")
    with pytest.raises(BpxlError, match=r"it is a symbolic link to .*gone\.xlsx, missing$"):
        atomic_write_text(dangling, "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.xlsx", "pipe.xlsx"]


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_make_folders_and_undo(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    created = make_folders(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert make_folders(tmp_path / "a" / "b") == []
    remove_empty_folders(created)
    assert list(tmp_path.iterdir()) == [tmp_path / "a"] and list((tmp_path / "a").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(BpxlError, match=r"^cannot make folder .*file/d/e: Not a directory$"):
        make_folders(tmp_path / "file" / "d" / "e")
