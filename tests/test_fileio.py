"""Atomic output: a failed write must never damage or half-replace the user's existing file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.fileio import atomic_output, atomic_write_bytes, atomic_write_text


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
