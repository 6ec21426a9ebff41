"""A workbook whose sheets share a name (ignoring case, as Excel compares them) is damaged: Excel
refuses to open it, and a reader by name sees one of the two. build and verify refuse it in one
line and leave the file as it was. The file is a real build with xl/workbook.xml edited."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from _cli import bpxl
from _spoil import edit_part

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "book.xlsx"
    done = bpxl("build", "--lr", "0.1", "0.5", "--steps", "5", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def renamed(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of `src` whose sheet `old` is called `new` in xl/workbook.xml."""

    def edit(text: str) -> str:
        text, n = re.subn(f'name="{re.escape(old)}"', f'name="{new}"', text)
        assert n == 1
        return text

    return edit_part(src, dst, "xl/workbook.xml", edit)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(("new", "named"), [("Setup", "two sheets named 'Setup'"),
                                            ("SETUP", "sheets 'Setup' and 'SETUP'")])  # fmt: skip
def test_build_and_verify_refuse_two_sheets_of_one_name(
    built: Path, tmp_path: Path, new: str, named: str
) -> None:
    book = renamed(built, tmp_path / "twice.xlsx", "LR 0.5", new)
    past = 1_500_000_000
    os.utime(book, (past, past))
    before = book.read_bytes()

    line = one_error_line(bpxl("build", "--lr", "0.1", "0.5", "--steps", "5", "--out", str(book)))
    assert named in line and "refusing to replace" in line and str(book) in line
    line = one_error_line(bpxl("verify", str(book)))
    assert named in line and "ignoring case" in line

    done = bpxl("verify", "--json", str(book))
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False and named in report["error"]

    assert book.read_bytes() == before and book.stat().st_mtime == past
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice.xlsx"]  # no temporary left


def test_names_that_differ_are_accepted(built: Path, tmp_path: Path) -> None:
    book = renamed(built, tmp_path / "notes.xlsx", "LR 0.5", "Notes")  # now the user's sheet
    done = bpxl("build", "--lr", "0.1", "0.5", "--steps", "5", "--out", str(book))
    assert done.returncode == 0, done.stderr
