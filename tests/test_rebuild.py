"""A rebuild loses nothing silently: the user's sheets, defined names and styles are carried over.

Every workbook here is a real file: built by bpxl, then edited as a user would (openpyxl standing
in for a spreadsheet program, transplant_sheets for `mnist.train --workbook`), then rebuilt by
the real CLI.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from _cli import bpxl
from _seed import seed
from _spoil import rewrite
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font, NamedStyle
from openpyxl.workbook.defined_name import DefinedName

from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.workbook import SHEETS_PROPERTY, build_workbook, existing_sheets
from backprop_xlsx.xlsx.transplant import transplant_sheets

ROOT = Path(__file__).resolve().parent.parent
USER_SHEETS = ["LR 7", "LR 0.5", "lr 1e3", "LR nan", "Notes"]


def _record(path: Path) -> list[str] | None:
    with zipfile.ZipFile(path) as z:
        if "docProps/custom.xml" not in z.namelist():
            return None
        text = z.read("docProps/custom.xml").decode()
    found = re.search(
        rf'name="{re.escape(SHEETS_PROPERTY)}".*?<vt:lpwstr[^>]*>(.*?)</vt:lpwstr>', text
    )
    assert found, text
    return json.loads(found.group(1).replace("&quot;", '"'))


def _user_edited(path: Path, etas: list[float]) -> None:
    """A bpxl workbook to which a user added sheets, a style, a defined name and a chart."""
    build_workbook(seed(), etas, 5, path)
    wb = openpyxl.load_workbook(path)
    for k, name in enumerate(USER_SHEETS):
        ws = wb.create_sheet(name)
        ws["A1"] = f"my sheet {name}"
        ws["B1"] = 10 + k
    notes = wb["Notes"]
    notes["A2"] = "rate"
    notes["B2"] = 0.25
    notes["B2"].number_format = "0.000%"
    notes["B2"].font = Font(bold=True, color="FFC00000")
    mine = NamedStyle(name="My note", font=Font(italic=True, color="FF7030A0"))
    notes["C1"] = "a named style of mine"
    notes["C1"].style = mine
    notes["C2"] = "a built-in named style"
    notes["C2"].style = "Good"
    notes["A3"] = "='LR 0.1'!W9"  # LR 0.1 goes in the rebuild: a warning
    notes["A4"] = "='LR 2'!W9"  # LR 2 is rebuilt: still there, no warning
    chart = LineChart()  # on the last LR sheet (kept LR 2 below): no warning
    chart.add_data(Reference(wb[layout.lr_sheet_title(etas[-1])], min_col=23, min_row=3, max_row=9))
    notes.add_chart(chart, "D2")
    if "LR 0.1" in wb.sheetnames:  # a chart of the removed LR 0.1: a warning
        chart = LineChart()
        chart.add_data(Reference(wb["LR 0.1"], min_col=23, min_row=3, max_row=9))
        wb["LR 7"].add_chart(chart, "D2")
    wb.defined_names["my_rate"] = DefinedName("my_rate", attr_text="Notes!$B$2")
    wb.save(path)


def _drop_charts_of(path: Path, ref: str) -> None:
    """Blank the series of charts that refer to `ref`, so that openpyxl can load the file."""

    def edit(name: str, data: bytes) -> bytes:
        if ref.encode() in data and name.startswith("xl/charts/"):
            return re.sub(rb"<c:ser>.*</c:ser>", b"", data, flags=re.S)
        return data

    rewrite(path, path, edit)


def test_rebuild_keeps_user_sheets_names_and_styles(tmp_path: Path) -> None:
    out = tmp_path / "book.xlsx"
    _user_edited(out, [0.1, 2])
    assert _record(out) == ["Setup", "LR 0.1", "LR 2", "Error vs LR"]

    done = bpxl("build", "--lr", "2", "0.8", "--steps", "7", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"wrote {out}: 2 learning-rate sheets × 8 iterations")
    assert lines[1] == f"kept {', '.join(USER_SHEETS)} (sheets not by bpxl)"
    assert lines[2] == "replaced Setup, LR 2, Error vs LR"
    assert lines[3] == "removed LR 0.1 (learning rates not asked for this time)"
    assert done.stderr.splitlines() == [
        "warning: a chart on sheet 'LR 7' refers to sheet 'LR 0.1', which this build removes: "
        "those references will show #REF! or #NAME?",
        "warning: sheet 'Notes' refers to sheet 'LR 0.1' (first in A3), which this build "
        "removes: those references will show #REF! or #NAME?",
    ]
    with zipfile.ZipFile(out) as z:  # openpyxl cannot load a chart of a missing sheet
        charts = [z.read(n) for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert len(charts) == 2 + 1 + 2  # LR 2, LR 0.8, Error vs LR; the user's two
    assert sum(b"'LR 0.1'!" in c for c in charts) == 1
    _drop_charts_of(out, "'LR 0.1'!")

    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Setup", "LR 2", "LR 0.8", "Error vs LR", *USER_SHEETS]
    for k, name in enumerate(USER_SHEETS):
        assert (wb[name]["A1"].value, wb[name]["B1"].value) == (f"my sheet {name}", 10 + k)
    b2 = wb["Notes"]["B2"]
    assert (b2.value, b2.number_format, b2.font.b, b2.font.color.rgb) == (
        0.25, "0.000%", True, "FFC00000"
    )  # fmt: skip
    assert wb["Notes"]["A3"].value == "='LR 0.1'!W9"  # kept as written, and warned about
    c1, c2 = wb["Notes"]["C1"], wb["Notes"]["C2"]
    assert (c1.style, c1.font.i, c1.font.color.rgb) == ("My note", True, "FF7030A0")
    assert c2.style == "Good" and {"My note", "Good"} <= set(wb.named_styles)
    assert wb.defined_names["my_rate"].attr_text == "Notes!$B$2"
    assert len(wb["Notes"]._charts) == 1
    assert wb["LR 2"].max_row == layout.last_row(7)
    assert _record(out) == ["Setup", "LR 2", "LR 0.8", "Error vs LR"]

    # The next rebuild knows LR 7 and LR 0.5 are the user's: asking for η = 0.5 stops it.
    before = out.read_bytes()
    refused = bpxl("build", "--lr", "0.5", "--steps", "3", "--out", str(out))
    assert refused.returncode == 2
    assert refused.stderr == (
        f"error: refusing to replace {out}: its sheet 'LR 0.5' was not made by bpxl, and bpxl is "
        "about to write a sheet of that name; rename that sheet, or give another --out\n"
    )
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.xlsx"]


def test_a_non_bpxl_workbook_keeps_its_own_setup(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "Setup"
    wb.active["A1"] = "my own setup"
    wb.create_sheet("LR 2")["A1"] = "my own LR 2"
    wb.save(theirs)
    before = theirs.read_bytes()
    done = bpxl("build", "--out", str(theirs))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"error: refusing to replace {theirs}: its sheet 'Setup' was not made by bpxl (the "
        "workbook has no bpxl sheets), and bpxl is about to write a sheet of that name; rename "
        "that sheet, or give another --out\n"
    )
    assert theirs.read_bytes() == before

    budget = tmp_path / "budget.xlsx"  # nothing in the way: bpxl's sheets join the user's
    wb = openpyxl.Workbook()
    wb.active.title = "Budget"
    wb.active["A1"] = 1234
    wb.save(budget)
    done = bpxl("build", "--lr", "0.5", "--steps", "2", "--out", str(budget))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["kept Budget (sheet not by bpxl)"]
    wb = openpyxl.load_workbook(budget)
    assert wb.sheetnames == ["Setup", "LR 0.5", "Error vs LR", "Budget"]
    assert wb["Budget"]["A1"].value == 1234


def _as_older_bpxl_wrote_it(path: Path) -> None:
    """Remove the record: what bpxl before the custom property wrote (otherwise the same)."""

    def edit(name: str, data: bytes) -> bytes | None:
        if name == "docProps/custom.xml":
            return None
        if name in ("_rels/.rels", "[Content_Types].xml"):
            return re.sub(rb"<[^<>]*custom[.-]properties[^<>]*/>", b"", data)
        return data

    rewrite(path, path, edit)
    assert _record(path) is None


def test_a_workbook_of_an_older_bpxl_is_recognised_by_its_setup_sheet(tmp_path: Path) -> None:
    out = tmp_path / "book.xlsx"
    build_workbook(seed(), [0.1, 7], 5, out)
    _as_older_bpxl_wrote_it(out)
    mnist = tmp_path / "mnist.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "MNIST"
    wb.active.append(["epoch", "accuracy"])
    wb.active.append([1, 0.99])
    wb.save(mnist)
    transplant_sheets(mnist, out, ["MNIST"])  # as mnist.train --workbook does

    found = existing_sheets(out)
    assert found is not None and found.legacy
    assert (found.bpxl, found.user) == (["Setup", "LR 0.1", "LR 7", "Error vs LR"], ["MNIST"])
    done = bpxl("build", "--lr", "0.1", "--steps", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1:4] == [
        "kept MNIST (sheet not by bpxl)",
        "replaced Setup, LR 0.1, Error vs LR",
        "removed LR 7 (learning rates not asked for this time)",
    ]
    assert "has no record of the sheets bpxl made" in lines[4]
    assert "'LR <number>' were taken for bpxl's" in lines[4]
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Setup", "LR 0.1", "Error vs LR", "MNIST"]
    assert wb["MNIST"]["B2"].value == 0.99
    assert _record(out) == ["Setup", "LR 0.1", "Error vs LR"]  # recorded from now on


def test_a_sheet_s_part_outside_the_package_is_never_copied(tmp_path: Path) -> None:
    """Part names that are absolute or climb out with `..` are refused, never written."""
    out = tmp_path / "book.xlsx"
    _user_edited(out, [0.5])
    evil = tmp_path / "evil.xlsx"
    with zipfile.ZipFile(out) as z:
        sheets = {n for n in z.namelist() if n.startswith("xl/worksheets/sheet")}
    last = max(sheets, key=lambda n: int(re.sub(r"\D", "", n)))  # the Notes sheet
    rels = f"xl/worksheets/_rels/{Path(last).name}.rels"
    image = (
        b'<Relationship Id="rIdX" Target="../../../escape.png" Type="http://'
        b'schemas.openxmlformats.org/officeDocument/2006/relationships/image"/>'
    )
    rewrite(out, evil, lambda n, d: d.replace(b"</Relationships>", image + b"</Relationships>")
            if n == rels else d)  # fmt: skip
    with zipfile.ZipFile(evil, "a") as zout:
        zout.writestr("../escape.png", b"\x89PNG not really")
        zout.writestr("/abs.xml", b"<x/>")
    evil.replace(out)
    before = out.read_bytes()
    done = bpxl("build", "--lr", "0.5", "--steps", "2", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: refusing to copy from {out}: a relationship names the part '../escape.png', "
        "outside the package\n"
    )
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.xlsx"]

    # transplant_sheets (mnist.train --workbook) into it: the stray members are not copied.
    mnist = tmp_path / "mnist.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "MNIST"
    wb.save(mnist)
    transplant_sheets(mnist, out, ["MNIST"])
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    assert not [n for n in names if n.startswith("/") or ".." in n.split("/")], names


@pytest.mark.parametrize("bad", ["[1, 2]", "not json", '"Setup"'])
def test_a_broken_record_is_not_trusted(tmp_path: Path, bad: str) -> None:
    """A record that is not a list of titles counts as no record: the Setup sheet decides."""
    out = tmp_path / "book.xlsx"
    build_workbook(seed(), [0.5], 2, out)
    record = rb"<vt:lpwstr\1>" + bad.encode() + b"</vt:lpwstr>"
    rewrite(out, out, lambda n, d: re.sub(rb"<vt:lpwstr([^>]*)>.*?</vt:lpwstr>", record, d)
            if n == "docProps/custom.xml" else d)  # fmt: skip
    found = existing_sheets(out)
    assert found is not None and found.legacy and found.bpxl == ["Setup", "LR 0.5", "Error vs LR"]


def test_a_hostile_user_sheet_is_refused_and_reveals_nothing(tmp_path: Path) -> None:
    """The workbook being rebuilt is a user's file: its carried sheets are untrusted XML too."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    book = tmp_path / "book.xlsx"
    build_workbook(seed(), [0.5], 3, book)
    wb = openpyxl.load_workbook(book)
    wb.create_sheet("Notes")["A1"] = "&xxe;"
    wb.save(book)
    with zipfile.ZipFile(book) as z:
        part = next(
            n
            for n in z.namelist()
            if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n) and b"&amp;xxe;" in z.read(n)
        )
    doctype = f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'.encode()
    hostile = rewrite(
        book,
        tmp_path / "hostile.xlsx",
        lambda n, d: doctype + d.replace(b"&amp;xxe;", b"&xxe;") if n == part else d,
    )
    before = hostile.read_bytes()
    out = bpxl("build", "--lr", "0.5", "--steps", "3", "--out", str(hostile))
    assert out.returncode == 2, out.stderr
    assert "DOCTYPE" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "TOP-SECRET" not in out.stdout + out.stderr
    assert hostile.read_bytes() == before  # nothing lost
