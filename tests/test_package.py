"""transplant_sheets on real files: openpyxl-written and LibreOffice-saved packages, no mocks.

The destination is an openpyxl workbook recalculated by LibreOffice (so it carries cached values
and LibreOffice's own styles and chart parts); the sources are openpyxl workbooks with an MNIST
sheet, one of them also saved by LibreOffice (shared strings). Three LibreOffice runs in all.
"""

from __future__ import annotations

import math
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font
from openpyxl.worksheet.table import Table

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.libreoffice import recalculate
from backprop_xlsx.xlsx.transplant import transplant_sheets

# Parts a transplant may change; everything else in the destination must stay byte-identical.
SHARED_PARTS = {
    "[Content_Types].xml",
    "xl/workbook.xml",
    "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
}
V1 = [(1, 0.4123456789, 0.8812), (2, 0.2512345678, 0.9234), (3, 0.1798765432, 0.9456)]
V2 = [(1, 0.5, 0.8), (2, 0.3, 0.9), (3, 0.2, 0.93), (4, 0.15, 0.95), (5, 0.12, 0.96)]


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def _charts(path: Path) -> list[str]:
    return sorted(n for n in _members(path) if re.fullmatch(r"xl/charts/chart\d+\.xml", n))


def _make_dst(path: Path) -> None:
    wb = openpyxl.Workbook()
    net = wb.active
    net.title = "Net"
    net["A1"], net["B1"] = "x", "sigmoid"
    for row, x in enumerate((0.5, -1.0, 2.0), start=2):
        net.cell(row, 1, x)
        net.cell(row, 2, f"=1/(1+EXP(-A{row}))").number_format = "0.000000"
    chart = LineChart()
    chart.add_data(Reference(net, min_col=2, min_row=1, max_row=4), titles_from_data=True)
    net.add_chart(chart, "D2")
    net.print_area = "A1:K20"
    errors = wb.create_sheet("Errors")
    errors["A1"] = "total"
    errors["B1"] = "=SUM(Net!B2:B4)"
    wb.save(path)


def _make_src(
    path: Path, rows: list[tuple[int, float, float]], *, with_table: bool = False
) -> None:
    wb = openpyxl.Workbook()
    other = wb.active
    other.title = "Other"
    other["A1"], other["B1"] = "other text", 3
    ws = wb.create_sheet("MNIST")
    for col, title in enumerate(("epoch", "loss", "accuracy", "double loss"), start=1):
        ws.cell(1, col, title).font = Font(bold=True, color="FF0000")
    for r, (epoch, loss, acc) in enumerate(rows, start=2):
        ws.cell(r, 1, epoch)
        ws.cell(r, 2, loss).number_format = "0.0000"
        ws.cell(r, 3, acc).number_format = "0.00%"
        ws.cell(r, 4, f"=B{r}*2").number_format = "0.000"
    last = len(rows) + 1
    for col, anchor in ((2, "F2"), (3, "F20")):
        chart = LineChart()
        chart.add_data(Reference(ws, min_col=col, min_row=1, max_row=last), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=last))
        ws.add_chart(chart, anchor)
    ws.print_area = f"A1:D{last}"
    if with_table:
        ws.add_table(Table(displayName="Runs", ref=f"A1:D{last}"))
    wb.save(path)


@pytest.fixture(scope="module")
def files(soffice: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pkg")
    f = {
        name: folder / f"{name}.xlsx" for name in ("dst_raw", "dst", "v1", "v2", "v1_raw", "v1_lo")
    }
    _make_dst(f["dst_raw"])
    _make_src(f["v1"], V1)
    _make_src(f["v2"], V2)
    _make_src(f["v1_raw"], V1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(recalculate, f["dst_raw"], f["dst"])]
        jobs.append(pool.submit(recalculate, f["v1_raw"], f["v1_lo"]))
        for job in jobs:
            job.result()
    f["a"] = folder / "a.xlsx"
    transplant_sheets(f["v1"], f["dst"], ["MNIST"], out=f["a"])
    f["b"] = folder / "b.xlsx"
    transplant_sheets(f["v2"], f["a"], ["MNIST"], out=f["b"])
    return f


def _check_mnist(ws: openpyxl.worksheet.worksheet.Worksheet, rows: list) -> None:
    assert [c.value for c in ws[1]] == ["epoch", "loss", "accuracy", "double loss"]
    assert ws["A1"].font.b and ws["A1"].font.color.rgb[-6:] == "FF0000"
    for r, (epoch, loss, acc) in enumerate(rows, start=2):
        assert [ws.cell(r, c).value for c in (1, 2, 3)] == [epoch, loss, acc]
        assert ws.cell(r, 2).number_format == "0.0000"
        assert ws.cell(r, 3).number_format == "0.00%"
        assert ws.cell(r, 4).number_format == "0.000"
    assert ws.max_row == len(rows) + 1


def test_every_other_part_is_byte_identical(files: dict[str, Path]) -> None:
    before, after = _members(files["dst"]), _members(files["a"])
    assert "xl/calcChain.xml" not in before or "xl/calcChain.xml" in after  # appending keeps it
    for name, data in before.items():
        if name not in SHARED_PARTS:
            assert after.get(name) == data, f"{name} changed"
    assert len(_charts(files["a"])) == len(_charts(files["dst"])) + 2


def test_moved_sheet_values_strings_formats_charts(files: dict[str, Path]) -> None:
    wb = openpyxl.load_workbook(files["a"])
    assert wb.sheetnames == ["Net", "Errors", "MNIST"]
    _check_mnist(wb["MNIST"], V1)
    assert wb["MNIST"]["D2"].value == "=B2*2"
    assert len(wb["MNIST"]._charts) == 2
    assert len(wb["Net"]._charts) == 1
    assert wb["MNIST"].print_area == "'MNIST'!$A$1:$D$4"
    assert wb["Net"].print_area == "'Net'!$A$1:$K$20"
    cached = openpyxl.load_workbook(files["a"], data_only=True)
    assert cached["Net"]["B2"].value == pytest.approx(1 / (1 + math.exp(-0.5)), rel=1e-14)
    assert cached["Errors"]["B1"].value == pytest.approx(
        sum(1 / (1 + math.exp(-x)) for x in (0.5, -1.0, 2.0)), rel=1e-14
    )


def test_replacing_keeps_order_and_leaves_no_orphans(files: dict[str, Path]) -> None:
    wb = openpyxl.load_workbook(files["b"])
    assert wb.sheetnames == ["Net", "Errors", "MNIST"]  # replaced, not duplicated
    _check_mnist(wb["MNIST"], V2)
    assert len(wb["MNIST"]._charts) == 2
    assert wb["MNIST"].print_area == "'MNIST'!$A$1:$D$6"
    assert len(_charts(files["b"])) == len(_charts(files["dst"])) + 2
    before, after = _members(files["a"]), _members(files["b"])
    assert after["xl/workbook.xml"] != b"" and "xl/calcChain.xml" not in after
    # The parts of Net and Errors are untouched by the second transplant as well.
    for name, data in _members(files["dst"]).items():
        if name not in SHARED_PARTS and name != "xl/calcChain.xml":
            assert after.get(name) == data, f"{name} changed"
    referenced = set()
    for name, data in after.items():
        if name.endswith(".rels"):
            referenced |= set(re.findall(rb'Target="([^"]+)"', data))
    targets = {t.decode().rsplit("/", 1)[-1] for t in referenced}
    for name in after:
        if name.startswith(("xl/charts/", "xl/drawings/")) and "_rels" not in name:
            assert name.rsplit("/", 1)[-1] in targets, f"orphan part {name}"
    assert set(before) - set(after) <= {"xl/calcChain.xml"} | {
        n for n in before if n.startswith(("xl/charts/", "xl/drawings/"))
    }


def test_replace_in_middle_matches_case_insensitively(
    files: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "src.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "errors"
    wb.active["A1"] = "new errors sheet"
    wb.save(src)
    out = tmp_path / "out.xlsx"
    transplant_sheets(src, files["b"], ["errors"], out=out)
    result = openpyxl.load_workbook(out)
    assert result.sheetnames == ["Net", "errors", "MNIST"]
    assert result["errors"]["A1"].value == "new errors sheet"
    assert len(result["MNIST"]._charts) == 2


def test_libreoffice_saved_source_and_libreoffice_opens_result(
    files: dict[str, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(files["v1_lo"]) as z:
        assert "xl/sharedStrings.xml" in z.namelist()  # the case this test is about
    combined = tmp_path / "combined.xlsx"
    transplant_sheets(files["v1_lo"], files["b"], ["MNIST", "Other"], out=combined)
    sheet_xml = [d for n, d in _members(combined).items() if n.startswith("xl/worksheets/sheet")]
    assert any(b't="inlineStr"' in d for d in sheet_xml)
    wb = openpyxl.load_workbook(combined, data_only=True)
    assert wb.sheetnames == ["Net", "Errors", "MNIST", "Other"]
    _check_mnist(wb["MNIST"], V1)
    assert wb["MNIST"]["D2"].value == pytest.approx(2 * V1[0][1], rel=1e-14)  # cached by LO
    assert wb["Other"]["A1"].value == "other text"

    fresh = tmp_path / "fresh.xlsx"  # no destination: a minimal package is created
    transplant_sheets(files["v1"], tmp_path / "fresh-dst.xlsx", ["MNIST"], out=fresh)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = [pool.submit(recalculate, p, p.with_suffix(".lo.xlsx")) for p in (combined, fresh)]
        recalculated = [job.result() for job in done]
    lo = openpyxl.load_workbook(recalculated[0], data_only=True)
    assert lo.sheetnames == ["Net", "Errors", "MNIST", "Other"]
    assert lo["Net"]["B3"].value == pytest.approx(1 / (1 + math.exp(1.0)), rel=1e-14)
    _check_mnist(lo["MNIST"], V1)
    assert lo["MNIST"]["D4"].value == pytest.approx(2 * V1[2][1], rel=1e-14)
    assert len(_charts(recalculated[0])) == 3
    lo_fresh = openpyxl.load_workbook(recalculated[1], data_only=True)
    assert lo_fresh.sheetnames == ["MNIST"]
    _check_mnist(lo_fresh["MNIST"], V1)
    assert lo_fresh["MNIST"]["D3"].value == pytest.approx(2 * V1[1][1], rel=1e-14)
    assert len(_charts(recalculated[1])) == 2


def test_missing_destination_with_all_sheets_is_a_copy(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "copy.xlsx"
    transplant_sheets(files["v1"], out, ["MNIST", "Other"])
    assert out.read_bytes() == files["v1"].read_bytes()


def test_bad_inputs(files: dict[str, Path], tmp_path: Path) -> None:
    dst_bytes = files["a"].read_bytes()
    out = tmp_path / "out.xlsx"
    text = tmp_path / "text.xlsx"
    text.write_text("not a zip")
    not_xlsx = tmp_path / "other.zip"
    with zipfile.ZipFile(not_xlsx, "w") as z:
        z.writestr("hello.txt", "hi")
    table_src = tmp_path / "table.xlsx"
    _make_src(table_src, V1, with_table=True)
    cases = [
        (
            (tmp_path / "missing.xlsx", files["a"], ["MNIST"]),
            r"^cannot read source .*no such file$",
        ),
        ((text, files["a"], ["MNIST"]), r"^cannot read source .*not an xlsx workbook"),
        ((files["v1"], text, ["MNIST"]), r"^cannot read destination .*not an xlsx workbook"),
        ((not_xlsx, files["a"], ["MNIST"]), r"not an xlsx workbook \(no package parts\)"),
        (
            (files["v1"], files["a"], ["Nope"]),
            r"^sheet 'Nope' is not in .* \(it has 'Other', 'MNIST'\)$",
        ),
        ((files["v1"], files["a"], []), r"^no sheet names given"),
        ((files["v1"], files["a"], ["MNIST", "mnist"]), r"^sheet names given twice"),
        ((table_src, files["a"], ["MNIST"]), r"has a table part, which is not supported$"),
    ]
    for args, pattern in cases:
        with pytest.raises(BpxlError, match=pattern) as info:
            transplant_sheets(*args, out=out)
        assert "\n" not in str(info.value)
        assert not out.exists()
    assert files["a"].read_bytes() == dst_bytes


def _with_calc_chain(src: Path, dst: Path) -> None:
    """Add the calcChain part Excel writes (LibreOffice and openpyxl never write one)."""
    calc_ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.calcChain+xml"
    calc_rt = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/calcChain"
    members = _members(src)
    members["xl/calcChain.xml"] = (
        b'<calcChain xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<c r="B1" i="2"/><c r="D2" i="3"/></calcChain>'
    )
    members["[Content_Types].xml"] = members["[Content_Types].xml"].replace(
        b"</Types>",
        f'<Override PartName="/xl/calcChain.xml" ContentType="{calc_ct}"/></Types>'.encode(),
    )
    members["xl/_rels/workbook.xml.rels"] = members["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>",
        f'<Relationship Id="rId99" Type="{calc_rt}" Target="calcChain.xml"/>'.encode()
        + b"</Relationships>",
    )
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_calc_chain_kept_on_append_dropped_on_replace(
    files: dict[str, Path], tmp_path: Path
) -> None:
    book = tmp_path / "excel-like.xlsx"
    _with_calc_chain(files["b"], book)
    chain = _members(book)["xl/calcChain.xml"]
    transplant_sheets(files["v1"], book, ["Other"])  # in place, appending only
    assert _members(book)["xl/calcChain.xml"] == chain
    transplant_sheets(files["v1"], book, ["MNIST"])  # replacing: the chain would be stale
    after = _members(book)
    assert "xl/calcChain.xml" not in after
    assert b"calcChain" not in after["[Content_Types].xml"]
    assert b"calcChain" not in after["xl/_rels/workbook.xml.rels"]
    wb = openpyxl.load_workbook(book)
    assert wb.sheetnames == ["Net", "Errors", "MNIST", "Other"]
    _check_mnist(wb["MNIST"], V1)


def _theme_parts(path: Path) -> tuple[list[str], bytes, bytes]:
    """Theme parts, workbook relationships and content types of a package."""
    members = _members(path)
    themes = sorted(n for n in members if n.startswith("xl/theme/"))
    return themes, members["xl/_rels/workbook.xml.rels"], members["[Content_Types].xml"]


def test_theme_copied_into_a_destination_without_one(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # LibreOffice writes no theme part; openpyxl's charts (no explicit colours here) need one.
    assert _theme_parts(files["dst"])[0] == []
    assert "xl/theme/theme1.xml" in _members(files["v1"])
    out = tmp_path / "themed.xlsx"
    transplant_sheets(files["v1"], files["dst"], ["MNIST"], out=out)
    themes, rels, types = _theme_parts(out)
    assert themes == ["xl/theme/theme1.xml"]
    assert _members(out)[themes[0]] == _members(files["v1"])[themes[0]]
    theme_rt = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/theme"
    assert f'Type="{theme_rt}" Target="theme/theme1.xml"'.encode() in rels
    assert b'PartName="/xl/theme/theme1.xml"' in types
    for name, data in _members(files["dst"]).items():
        if name not in SHARED_PARTS:
            assert _members(out)[name] == data, f"{name} changed"
    lo = recalculate(out, tmp_path / "themed.lo.xlsx")
    assert openpyxl.load_workbook(lo).sheetnames == ["Net", "Errors", "MNIST"]
    assert len(_charts(lo)) == 3

    # A destination with its own theme keeps it: no second theme, no second relationship.
    own = tmp_path / "own.xlsx"
    transplant_sheets(files["v1"], files["v2"], ["MNIST"], out=own)
    themes, rels, _ = _theme_parts(own)
    assert themes == ["xl/theme/theme1.xml"] and rels.count(theme_rt.encode()) == 1
    assert _members(own)[themes[0]] == _members(files["v2"])[themes[0]]
