"""Real LibreOffice runs: forced recalculation, precision of cached values, PDF/PNG rendering.

LibreOffice is slow to start (~1.5 s a run on a small machine), so the module shares a few runs:
one fixture recalculates two workbooks concurrently (which also checks that calls with private
profiles do not interfere), one exports a PDF.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest
from _spoil import edit_part
from openpyxl.chart import LineChart, Reference

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx import libreoffice
from backprop_xlsx.xlsx.libreoffice import export_pdf, find_soffice, pdf_to_png, recalculate

WRONG = "42"
X_VALUES = [0.1, -1.7, 2.123456789012345, 1e-7, 0.6180339887498949]


def _spoil_cached_values(path: Path) -> None:
    """Give every formula cell of the first sheet a wrong cached value, as a stale file would."""

    def edit(text: str) -> str:
        text, n = re.subn(r"(</f>)(<v\s*/>|<v></v>)?", rf"\1<v>{WRONG}</v>", text)
        assert n > 0
        return text

    edit_part(path, path, "xl/worksheets/sheet1.xml", edit)


def _make_book(path: Path, scale: float) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Calc"
    ws["A1"], ws["B1"], ws["C1"] = "x", "sigmoid", "scaled"
    for row, x in enumerate(X_VALUES, start=2):
        ws.cell(row, 1, x)
        ws.cell(row, 2, f"=1/(1+EXP(-A{row}))")
        ws.cell(row, 3, f"=B{row}*{scale}")
    ws["E1"] = "=1/3"
    ws["E2"] = "=EXP(-0.123456789)"
    ws["E3"] = '=IF(E1>0,"positive","negative")'
    chart = LineChart()
    chart.add_data(
        Reference(ws, min_col=2, min_row=1, max_row=len(X_VALUES) + 1), titles_from_data=True
    )
    ws.add_chart(chart, "G2")
    ws.print_area = "A1:P20"
    other = wb.create_sheet("Chart only")
    other["A1"] = "see chart"
    chart2 = LineChart()
    chart2.add_data(Reference(ws, min_col=3, min_row=1, max_row=len(X_VALUES) + 1))
    other.add_chart(chart2, "B3")
    # Page setup the README pictures rely on: without it a chart that crosses the right edge
    # of a portrait page is sliced onto a second page.
    for sheet in (ws, other):
        sheet.page_setup.orientation = "landscape"
        sheet.page_setup.fitToWidth = 1
        sheet.page_setup.fitToHeight = 1
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
    wb.save(path)
    _spoil_cached_values(path)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def books(soffice: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two spoiled workbooks, recalculated by two concurrent LibreOffice runs."""
    folder = tmp_path_factory.mktemp("lo")
    srcs = {}
    for name, scale in (("a", 2.0), ("b", -3.0)):
        srcs[name] = folder / f"{name}.xlsx"
        _make_book(srcs[name], scale)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(recalculate, src, folder / f"{name}.recalc.xlsx")
            for name, src in srcs.items()
        }
        out = {name: f.result() for name, f in futures.items()}
    return {"src_a": srcs["a"], "src_b": srcs["b"], "a": out["a"], "b": out["b"]}


def test_find_soffice_matches_fixture(soffice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BPXL_SOFFICE", raising=False)
    assert find_soffice() is not None
    monkeypatch.setenv("BPXL_SOFFICE", soffice)
    assert find_soffice() == shutil.which(soffice)


def test_bad_override_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPXL_SOFFICE", "/nonexistent/soffice")
    with pytest.raises(BpxlError, match="BPXL_SOFFICE"):
        find_soffice()


def test_missing_libreoffice_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a machine without LibreOffice: empty PATH, no known install folders."""
    monkeypatch.delenv("BPXL_SOFFICE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(libreoffice, "_COMMON_PATHS", ())
    src = tmp_path / "in.xlsx"
    openpyxl.Workbook().save(src)
    with pytest.raises(BpxlError, match=r"^LibreOffice is not installed: install it"):
        recalculate(src, tmp_path / "out.xlsx")
    assert not (tmp_path / "out.xlsx").exists()


def test_spoiled_cached_values_are_really_recalculated(books: dict[str, Path]) -> None:
    spoiled = openpyxl.load_workbook(books["src_a"], data_only=True)["Calc"]
    assert spoiled["B2"].value == int(WRONG)  # the input really carried wrong cached values
    for name, scale in (("a", 2.0), ("b", -3.0)):
        ws = openpyxl.load_workbook(books[name], data_only=True)["Calc"]
        for row, x in enumerate(X_VALUES, start=2):
            assert ws.cell(row, 2).value == pytest.approx(_sigmoid(x), rel=1e-14)
            assert ws.cell(row, 3).value == pytest.approx(scale * _sigmoid(x), rel=1e-14)
        assert ws["E3"].value == "positive"


def test_formulas_and_charts_are_kept(books: dict[str, Path]) -> None:
    wb = openpyxl.load_workbook(books["a"])
    assert wb.sheetnames == ["Calc", "Chart only"]
    assert wb["Calc"]["B2"].value == "=1/(1+EXP(-A2))"
    with zipfile.ZipFile(books["a"]) as z:
        assert len([n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]) == 2


def test_precision_of_cached_values(books: dict[str, Path]) -> None:
    """LibreOffice 7.4 writes 15 significant digits: not bit-exact, but far inside 1e-12."""
    ws = openpyxl.load_workbook(books["a"], data_only=True)["Calc"]
    for cell, exact in (("E1", 1 / 3), ("E2", math.exp(-0.123456789))):
        got = ws[cell].value
        assert isinstance(got, float)
        assert abs(got - exact) <= 1e-14 * abs(exact)
    for row, x in enumerate(X_VALUES, start=2):  # typed-in constants are rounded the same way
        assert ws.cell(row, 1).value == pytest.approx(x, rel=1e-14)


def test_recalculate_in_place_and_bad_inputs(soffice: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.xlsx"
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    old = b"previous good file"
    dst = tmp_path / "dst.xlsx"
    dst.write_bytes(old)
    with pytest.raises(BpxlError, match=r"^LibreOffice failed recalculating .*junk\.xlsx"):
        recalculate(junk, dst)
    assert dst.read_bytes() == old  # atomic: failure leaves the old output alone
    text = tmp_path / "text.xlsx"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(BpxlError, match="not a zip package"):
        recalculate(text, dst)
    with pytest.raises(BpxlError, match="no such file"):
        recalculate(tmp_path / "missing.xlsx", dst)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_timeout_kills_libreoffice(books: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BpxlError, match=r"did not finish recalculating .* within 0\.2 s"):
        recalculate(books["src_a"], tmp_path / "late.xlsx", timeout=0.2)
    assert not (tmp_path / "late.xlsx").exists()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_pdf_export_and_png(
    books: dict[str, Path], tmp_path: Path, pdftoppm: str, pdftotext: str
) -> None:
    # Paginated export of the *spoiled* source: fit-to-page gives one page per sheet, and the
    # page shows recalculated values, not the stale cached ones.
    pdf = export_pdf(books["src_a"], tmp_path / "book.pdf")
    pngs = pdf_to_png(pdf, tmp_path / "shot", dpi=40)
    assert [p.name for p in pngs] == ["shot-1.png", "shot-2.png"]
    width, height = _png_size(pngs[0])
    assert width > height  # landscape
    text = subprocess.run(
        [pdftotext, "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, check=True
    ).stdout.decode()
    assert "0.333333" in text and "positive" in text
    only_second = pdf_to_png(pdf, tmp_path / "second", dpi=20, first_page=2, last_page=2)
    assert [p.name for p in only_second] == ["second-2.png"]


def test_pdf_single_page_sheets(books: dict[str, Path], tmp_path: Path, pdftoppm: str) -> None:
    pdf = export_pdf(books["a"], tmp_path / "single.pdf", single_page_sheets=True)
    first, second = (_png_size(p) for p in pdf_to_png(pdf, tmp_path / "s", dpi=20))
    assert first != second  # each page is sized to its own sheet, not to a paper format


def test_pdf_to_png_errors(tmp_path: Path, pdftoppm: str) -> None:
    with pytest.raises(BpxlError, match="no such file"):
        pdf_to_png(tmp_path / "none.pdf", tmp_path / "x")
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(BpxlError, match="pdftoppm failed"):
        pdf_to_png(bad, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pdf"]
