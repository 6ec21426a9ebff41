"""Spoiled copies of xlsx workbooks: the zip copied entry by entry, with one part's XML edited.

A spoil is the tests' own hand edit of a file, as a user, a spreadsheet or a bad writer would
make it. It goes through plain zipfile, ElementTree and regexes, never bpxl's package code, so
that a bug in bpxl's reader or writer can neither hide a spoil nor make one pass unnoticed.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path

REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of `src` at `dst` (which may be `src`) with every entry, in order and with its own
    zip header, passed through edit(name, data); an entry whose edit gives None is left out."""
    tmp = dst.with_name(dst.name + ".spoiling")
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
            for item in zin.infolist():
                data = edit(item.filename, zin.read(item))
                if data is not None:
                    zout.writestr(item, data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp.replace(dst)


def edit_part(src: Path, dst: Path, part: str, edit: Callable[[str], str]) -> Path:
    """A copy of `src` whose part `part` has its XML text passed through `edit`, which must
    change it."""
    seen: list[str] = []

    def change(name: str, data: bytes) -> bytes:
        if name != part:
            return data
        text = data.decode("utf-8")
        edited = edit(text)
        assert edited != text, f"the spoil changed nothing in {part}"
        seen.append(name)
        return edited.encode("utf-8")

    rewrite(src, dst, change)
    assert seen, f"no part {part} in {src}"
    return dst


def sheet_part(src: Path, title: str) -> str:
    """The zip entry of sheet `title`, through xl/workbook.xml and its relationships."""
    with zipfile.ZipFile(src) as z:
        book = ET.fromstring(z.read("xl/workbook.xml"))
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    sheets = book.iterfind("{*}sheets/{*}sheet")
    (rid,) = [s.get(f"{REL_NS}id") for s in sheets if s.get("name") == title]
    (target,) = [r.get("Target", "") for r in rels if r.get("Id") == rid]
    return target[1:] if target.startswith("/") else posixpath.normpath(f"xl/{target}")


def edit_sheet(src: Path, dst: Path, title: str, edit: Callable[[str], str]) -> Path:
    """A copy of `src` whose sheet `title` has its XML text passed through `edit` (a change)."""
    return edit_part(src, dst, sheet_part(src, title), edit)


def set_value(src: Path, dst: Path, title: str, cell: str, value: float) -> Path:
    """A copy of `src` whose typed value of `cell` (one cell on sheet `title`) is `value`."""
    pattern = re.compile(rf'(<c r="{cell}"[^>]*>\s*<v>)[^<]*(</v>)')

    def edit(xml: str) -> str:
        text, n = pattern.subn(rf"\g<1>{value!r}\g<2>", xml)
        assert n == 1, f"no value cell {cell} on {title}"
        return text

    return edit_sheet(src, dst, title, edit)


def edit_column(
    src: Path,
    dst: Path,
    title: str,
    letter: str,
    edit: Callable[[str, int], str],
    rows: Callable[[int], bool] = lambda row: True,
) -> str:
    """A copy of `src` whose formulas of column `letter` on sheet `title`, in the rows `rows`
    accepts, pass through edit(formula, row), each changed; returns the first spoiled cell."""
    cell = re.compile(rf'(<c r="{letter}(\d+)"[^>]*><f>)([^<]*)(</f>)')
    spoiled: list[int] = []

    def swap(m: re.Match[str]) -> str:
        row = int(m[2])
        if not rows(row):
            return m[0]
        new = edit(m[3], row)
        assert new != m[3], f"{letter}{row}: {m[3]} unchanged"
        spoiled.append(row)
        return m[1] + new + m[4]

    def edit_formulas(xml: str) -> str:
        xml = cell.sub(swap, xml)
        assert spoiled, f"no formula of column {letter} changed"
        return xml

    edit_sheet(src, dst, title, edit_formulas)
    return f"{letter}{min(spoiled)}"
