"""How the sheets read when opened: the iteration column, the frozen panes, the charts on the
first screen with an iteration axis from 0, and Error vs LR's headers whole; and verify's
check of the iteration column."""

from __future__ import annotations

import re
from pathlib import Path

import openpyxl
import pytest
from _spoil import rewrite
from openpyxl.utils import column_index_from_string, get_column_letter

from backprop_xlsx.mlp import description, layout, sheetview, summary_layout
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.workbook import verify_workbook

CIRCLE = Path(__file__).parents[1] / "docs" / "networks" / "circle_2-16-16-1.toml"
SCREEN = 1366 - 56  # pixels of cells on a 1366-pixel screen: less the row numbers, scroll bar
STEPS = {"seed": 100, "xor": 500, "circle": 20}
FROZEN = {"seed": "F4", "xor": "N4", "circle": "B4"}  # iteration + t1 t2 i1 i2; + 12; alone


def network(name: str) -> description.Network:
    return description.load(CIRCLE) if name == "circle" else description.preset(name)


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("views")
    out = {}
    for name, steps in STEPS.items():
        out[name] = folder / f"{name}.xlsx"
        build_workbook(network(name), [0.5, 2.0], steps, out[name])
    return out


@pytest.fixture(scope="module")
def loaded(books: dict[str, Path]) -> dict[str, openpyxl.Workbook]:
    return {name: openpyxl.load_workbook(path) for name, path in books.items()}


def pixels(ws: openpyxl.worksheet.worksheet.Worksheet, columns: int) -> int:
    """Screen pixels of the first `columns` columns at 100 % (7 pixels a character of width)."""
    return sum(
        round(7 * ws.column_dimensions[get_column_letter(c)].width) for c in range(1, columns + 1)
    )


@pytest.mark.parametrize("name", STEPS)
def test_the_iteration_column_counts_from_zero(
    books: dict[str, Path], loaded: dict[str, openpyxl.Workbook], name: str
) -> None:
    steps = STEPS[name]
    formulas = loaded[name]["LR 2"]
    cached = openpyxl.load_workbook(books[name], data_only=True)["LR 2"]
    assert formulas["A3"].value == "iteration"
    assert formulas["A4"].value == "=0"
    last = layout.last_row(steps)
    assert [formulas[f"A{r}"].value for r in range(5, last + 1)] == [
        f"=A{r - 1}+1" for r in range(5, last + 1)
    ]
    assert [cached[f"A{r}"].value for r in range(4, last + 1)] == list(range(steps + 1))


@pytest.mark.parametrize("name", STEPS)
def test_panes_frozen_at_the_header_and_the_input_columns(
    books: dict[str, Path], loaded: dict[str, openpyxl.Workbook], name: str
) -> None:
    ws = loaded[name]["LR 2"]
    assert ws.freeze_panes == FROZEN[name]
    frozen = column_index_from_string(FROZEN[name][0]) - 1
    headers = [ws.cell(layout.HEADER_ROW, c).value for c in range(1, frozen + 2)]
    assert headers[0] == "iteration"
    inputs = [bool(re.fullmatch(r"[ti]\d+\S*", h)) for h in headers[1:]]
    if frozen > 1:  # every target and input, and nothing else
        assert all(inputs[:-1]) and not inputs[-1]
    else:  # twenty samples' sixty columns would fill the screen: the iteration alone
        assert inputs == [True] and pixels(ws, 1 + 3 * 20) > SCREEN
    assert pixels(ws, frozen) <= 0.6 * SCREEN  # the inputs only when they leave room


@pytest.mark.parametrize("name", STEPS)
def test_the_charts_are_on_the_first_screen(
    books: dict[str, Path], loaded: dict[str, openpyxl.Workbook], name: str
) -> None:
    ws = loaded[name]["LR 2"]
    frozen = column_index_from_string(FROZEN[name][0]) - 1
    samples = network(name).samples
    assert len(ws._charts) == (1 if samples == 1 else 2)
    left = []
    for chart in ws._charts:  # EMU: 12,700 a point, 9,525 a pixel
        start, size = chart.anchor._from, chart.anchor.ext
        assert start.row + 1 == sheetview.CHART_ROW  # in the frozen band above the header
        assert size.height / 12_700 <= ws.row_dimensions[sheetview.CHART_ROW].height
        left.append((pixels(ws, start.col) + start.colOff / 9_525, size.width / 9_525))
    # right of the frozen columns, whole on the first screen; the outputs chart beside it
    assert pixels(ws, frozen) < left[0][0] < pixels(ws, frozen) + 20
    assert left[0][0] + left[0][1] <= SCREEN
    if samples > 1:
        assert left[0][0] + left[0][1] < left[1][0] < left[0][0] + left[0][1] + 20
        assert left[1][0] < SCREEN - 200  # most of it in view


@pytest.mark.parametrize("name", STEPS)
def test_the_iteration_axis_starts_at_0_with_few_labels(
    books: dict[str, Path], loaded: dict[str, openpyxl.Workbook], name: str
) -> None:
    steps = STEPS[name]
    wb = loaded[name]
    for chart in [*wb["LR 2"]._charts, *wb[layout.SUMMARY_SHEET]._charts]:
        axis = chart.x_axis
        assert (axis.scaling.min, axis.scaling.max) == (0, steps)
        assert axis.majorUnit == sheetview.tick_unit(steps)
        assert steps / axis.majorUnit <= sheetview.TICKS
    x = wb["LR 2"]._charts[0].series[0].xVal.numRef.f
    assert x == f"'LR 2'!$A${layout.FIRST_ROW}:$A${layout.last_row(steps)}"


@pytest.mark.parametrize(
    ("steps", "unit"), [(1, 1), (3, 1), (20, 5), (60, 20), (100, 20), (300, 100), (2000, 500)]
)
def test_tick_unit_is_1_2_or_5_times_a_power_of_ten(steps: int, unit: int) -> None:
    assert sheetview.tick_unit(steps) == unit


@pytest.mark.parametrize("n", [1, 6])
def test_error_vs_lr_headers_and_instruction_are_whole(tmp_path: Path, n: int) -> None:
    out = tmp_path / "b.xlsx"
    build_workbook(network("seed"), [0.1, 0.2, 0.5, 0.8, 1, 2][:n], 20, out)
    ws = openpyxl.load_workbook(out)[layout.SUMMARY_SHEET]
    header = ws.cell(summary_layout.SUMMARY_HEADER_ROW, 4)
    assert header.value == "first iteration below threshold"
    # two lines ("first iteration" / "below threshold"), each inside the column's width
    assert ws.column_dimensions["D"].width >= len("first iteration") + 1
    assert ws.row_dimensions[summary_layout.SUMMARY_HEADER_ROW].height >= 2 * 15
    assert header.alignment.wrap_text
    instruction = next(r for r in ws.merged_cells.ranges if r.coord.startswith("C3:"))
    text = ws["C3"].value
    assert text.startswith("change it") and ws["C3"].alignment.wrap_text
    width = sum(
        ws.column_dimensions[get_column_letter(c)].width
        for c in range(instruction.min_col, instruction.max_col + 1)
    )
    lines = ws.row_dimensions[3].height / 15
    assert width * lines >= len(text) + 2
    assert instruction.max_col == max(n + 1, 4)  # inside the tables' columns: printed whole


def spoil(src: Path, edit, dst: Path) -> Path:  # type: ignore[no-untyped-def]
    """A copy of `src` whose parts pass through edit(part name, xml), as if a spreadsheet had
    saved it: verify takes its cached values (NumPy's, which every engine test holds the
    formulas to) instead of recalculating in LibreOffice."""

    def change(name: str, data: bytes) -> bytes:
        if name == "docProps/app.xml":  # saved by a spreadsheet: its values count
            return data.replace(b">bpxl</Application>", b">Microsoft Excel</Application>")
        if name.endswith(".xml"):
            return edit(name, data.decode("utf-8")).encode("utf-8")
        return data

    return rewrite(src, dst, change)


def test_verify_checks_the_iteration_column(books: dict[str, Path], tmp_path: Path) -> None:
    assert not verify_workbook(spoil(books["seed"], lambda p, x: x, tmp_path / "0.xlsx")).findings
    sheet = "xl/worksheets/sheet3.xml"  # LR 2

    def skip_one(part: str, xml: str) -> str:
        return xml.replace("<f>A9+1</f>", "<f>A9+2</f>") if part == sheet else xml

    report = verify_workbook(spoil(books["seed"], skip_one, tmp_path / "a.xlsx"), "cached")
    assert [(f.sheet, f.cell) for f in report.findings] == [("LR 2", "A10")]
    assert "differs" in report.findings[0].problem

    def typed(part: str, xml: str) -> str:
        if part != sheet:
            return xml
        return re.sub(r'(<c r="A30"[^>]*>)<f>A29\+1</f>', r"\1", xml)

    report = verify_workbook(spoil(books["seed"], typed, tmp_path / "b.xlsx"), "cached")
    assert [(f.cell, f.problem) for f in report.findings] == [
        ("A30", "typed-in value instead of a formula")
    ]


def _left(ref: str) -> str:
    """A reference one column to the left; η's $B$1 stays."""
    m = re.fullmatch(r"(\$?)([A-Z]+)(\$?\d+)", ref)
    assert m is not None, ref
    if ref == "$B$1" or m[2] == "A":  # η; a link to a sheet's A1
        return ref
    return f"{m[1]}{get_column_letter(column_index_from_string(m[2]) - 1)}{m[3]}"


def without_iteration_column(part: str, xml: str) -> str:
    """A workbook as bpxl before 0.3 wrote it: the LR sheets start with t1 in column A."""
    if re.fullmatch(r"xl/worksheets/sheet([2-7])\.xml", part):  # the six LR sheets
        xml = re.sub(r'<c r="A([3-9]|\d\d+)"[^>]*?(?:/>|>.*?</c>)', "", xml)

        def formula(f: re.Match[str]) -> str:
            refs = re.sub(r"(?<![$A-Z!])(\$?[A-Z]{1,3}\$?\d+)\b", lambda r: _left(r[1]), f[2])
            return f[1] + refs + f[3]

        def cell(m: re.Match[str]) -> str:
            body = re.sub(r"(<f>)(.*?)(</f>)", formula, m[3])
            return f'<c r="{_left(m[1])}"{m[2]}>{body}</c>'

        return re.sub(r'<c r="([A-Z]+(?:[3-9]|\d\d+))"([^>]*)>(.*?)</c>', cell, xml, flags=re.S)
    return re.sub(r"('LR [0-9.]+'!)(\$?[A-Z]+\$?\d+)", lambda m: m[1] + _left(m[2]), xml)


def test_verify_still_passes_a_workbook_without_the_iteration_column(
    books: dict[str, Path], tmp_path: Path
) -> None:
    """No false alarm on a workbook of bpxl before 0.3, correct in its own layout; and a wrong
    cell in one is still found."""
    wb_path = tmp_path / "six.xlsx"
    build_workbook(network("seed"), [0.1, 0.2, 0.5, 0.8, 1, 2], 30, wb_path)
    old = spoil(wb_path, without_iteration_column, tmp_path / "old.xlsx")
    ws = openpyxl.load_workbook(old)["LR 2"]
    assert ws["A3"].value == "t1" and ws["E5"].value == "=E4-$B$1*X4"  # the old w1
    report = verify_workbook(old, "cached")
    assert not report.findings, report.findings[:3]
    assert report.cells_checked > 6 * 31 * 31

    def wrong(part: str, xml: str) -> str:
        xml = without_iteration_column(part, xml)
        if part == "xl/worksheets/sheet7.xml":  # LR 2: w1 of iteration 5 reads w2
            xml = xml.replace("<f>E8-$B$1*X8</f>", "<f>F8-$B$1*X8</f>")
        return xml

    report = verify_workbook(spoil(wb_path, wrong, tmp_path / "bad.xlsx"), "cached")
    assert ("LR 2", "E9") in [(f.sheet, f.cell) for f in report.findings]
