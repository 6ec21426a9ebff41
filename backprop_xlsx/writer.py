"""Write the workbook from the layout: every computed cell a live formula, nothing precomputed.

openpyxl builds everything a person sees first (Setup, the headers, iteration 0 of every table,
styles, charts, page setup), but writing the bulk of the rows through openpyxl costs ~1 µs of
Python per cell and more with styles: 6 learning rates × 10,000 steps are 1.9 million formulas
(~22 s unstyled, XlsxWriter ~100 s, its formula preparation runs ~30 regexes per cell). So the
rows after iteration 0 are streamed straight into the sheets' XML from one str.format pattern per
row, reusing the style ids openpyxl gave iteration 0's cells: the same cells openpyxl would write,
~10× faster (see benchmarks/bench_workbook.py).
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from openpyxl import Workbook
from openpyxl.chart import LineChart, Reference
from openpyxl.packaging.custom import StringProperty
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet

from . import layout
from .config import check_runs_finish
from .errors import BpxlError
from .fileio import atomic_output, output_path
from .network import PARAMS, train
from .package import build_package, workbook_facts

MEANING = {
    "i1": "input 1",
    "i2": "input 2",
    "t1": "target of output 1",
    "t2": "target of output 2",
    "w1": "weight i1 → h1",
    "w2": "weight i2 → h1",
    "w3": "weight i1 → h2",
    "w4": "weight i2 → h2",
    "w5": "weight a_h1 → o1",
    "w6": "weight a_h2 → o1",
    "w7": "weight a_h1 → o2",
    "w8": "weight a_h2 → o2",
}

# (text, is a heading). Plain text cells: none may be read as a formula (see _text).
EQUATIONS: tuple[tuple[str, bool], ...] = (
    ("Forward pass, with σ(x) = 1/(1 + e^(−x))", True),
    ("h1 = w1·i1 + w2·i2        a_h1 = σ(h1)", False),
    ("h2 = w3·i1 + w4·i2        a_h2 = σ(h2)", False),
    ("o1 = w5·a_h1 + w6·a_h2    a_o1 = σ(o1)", False),
    ("o2 = w7·a_h1 + w8·a_h2    a_o2 = σ(o2)", False),
    ("Error", True),
    ("E1 = ½·(t1 − a_o1)²      E2 = ½·(t2 − a_o2)²      E_total = E1 + E2", False),
    ("Backward pass: the chain rule, with σ'(x) = σ(x)·(1 − σ(x))", True),
    ("∂E/∂w5 = ∂E/∂a_o1 · ∂a_o1/∂o1 · ∂o1/∂w5 = (a_o1 − t1)·a_o1·(1 − a_o1)·a_h1", False),
    ("∂E/∂w6 = ∂E/∂a_o1 · ∂a_o1/∂o1 · ∂o1/∂w6 = (a_o1 − t1)·a_o1·(1 − a_o1)·a_h2", False),
    ("∂E/∂w7 = ∂E/∂a_o2 · ∂a_o2/∂o2 · ∂o2/∂w7 = (a_o2 − t2)·a_o2·(1 − a_o2)·a_h1", False),
    ("∂E/∂w8 = ∂E/∂a_o2 · ∂a_o2/∂o2 · ∂o2/∂w8 = (a_o2 − t2)·a_o2·(1 − a_o2)·a_h2", False),
    ("Write δo1 = ∂E/∂o1 = (a_o1 − t1)·a_o1·(1 − a_o1) and δo2 = (a_o2 − t2)·a_o2·(1 − a_o2).", False),  # noqa: E501
    ("w1 reaches E_total along both paths, through o1 (via w5) and through o2 (via w7):", False),
    ("∂E/∂w1 = (∂E1/∂a_h1 + ∂E2/∂a_h1) · ∂a_h1/∂h1 · ∂h1/∂w1", False),
    ("          with ∂E1/∂a_h1 = δo1·w5 and ∂E2/∂a_h1 = δo2·w7, ∂a_h1/∂h1 = a_h1·(1 − a_h1), ∂h1/∂w1 = i1", False),  # noqa: E501
    ("∂E/∂w1 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i1", False),
    ("∂E/∂w2 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i2", False),
    ("∂E/∂w3 = (δo1·w6 + δo2·w8)·a_h2·(1 − a_h2)·i1", False),
    ("∂E/∂w4 = (δo1·w6 + δo2·w8)·a_h2·(1 − a_h2)·i2", False),
    ("Update: gradient descent, all eight weights at once", True),
    ("w ← w − η·∂E/∂w: each row's weights are the row above's minus η times its gradients.", False),
)  # fmt: skip

BOLD = Font(bold=True)
TITLE = Font(bold=True, size=14)
HEADER_FILL = PatternFill("solid", start_color="DDEBF7")
INPUT_FILL = PatternFill("solid", start_color="FFF2CC")  # cells a person is meant to edit
HEADER_BORDER = Border(bottom=Side(style="thin"))
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)

PRINT_ROWS = 40  # iterations of an LR sheet's table that go into its print area
ZIP_LEVEL = 1  # deflate level for the streamed sheets: ~3× faster than 6, file ~25% larger
CHUNK_ROWS = 2000


SHEETS_PROPERTY = "bpxl.sheets"  # custom document property: JSON list of the sheets bpxl made


def build_workbook(
    values: Mapping[str, float],
    etas: Sequence[float],
    steps: int,
    out: Path,
    *,
    recalc: bool = False,
    warn: Callable[[str], None] | None = None,
) -> str:
    """Write the workbook to `out` atomically and return the lines the CLI prints.

    Refused before anything is written: a learning rate whose run overflows, an `out` that is
    not an xlsx workbook (or not a regular file), and a sheet of `out` that bpxl did not make
    but whose name bpxl is about to write. An existing `out` is replaced only by a complete new
    file; the sheets bpxl did not make (an MNIST sheet, a user's notes) are carried over, and
    the lines say what was kept, replaced and removed. `warn` gets one line per carried formula
    that refers to a sheet this build removes (default: stderr). With `recalc`, LibreOffice
    computes and stores every value before the replace.
    """
    start = time.perf_counter()
    history = check_runs_finish(values, etas, steps)
    link, out = Path(out), output_path(out)
    titles = [layout.SETUP_SHEET, *(layout.lr_sheet_title(e) for e in etas), layout.SUMMARY_SHEET]
    old = existing_sheets(out)
    new = {t.casefold() for t in titles}
    if old is not None:
        for name in old.user:
            if name.casefold() in new:
                raise BpxlError(
                    f"refusing to replace {link}: its sheet {name!r} was not made by bpxl"
                    f"{old.note_short()}, and bpxl is about to write a sheet of that name; "
                    "rename that sheet, or give another --out"
                )
    kept = old.user if old else []
    replaced = [t for t in old.bpxl if t.casefold() in new] if old else []
    removed = [t for t in old.bpxl if t.casefold() not in new] if old else []
    if recalc:
        from .libreoffice import NOT_INSTALLED, find_soffice

        if find_soffice() is None:
            raise BpxlError(NOT_INSTALLED)
    carry = {"carry_from": out, "carry": kept, "removed": removed}
    e_total = history["E_total"]
    try:
        with atomic_output(out) as tmp:
            if not recalc:
                warnings = write_workbook(values, etas, steps, tmp, e_total=e_total, **carry)
            else:
                from .libreoffice import recalculate

                with tempfile.TemporaryDirectory(prefix="bpxl-build-") as work:
                    book = Path(work) / "book.xlsx"
                    warnings = write_workbook(values, etas, steps, book, e_total=e_total, **carry)
                    recalculate(book, book)
                    shutil.copyfile(book, tmp)
    except OSError as exc:  # disk full, an I/O error: the old file is untouched
        raise BpxlError(f"cannot write {link}: {exc.strerror or exc}") from None
    for line in warnings:
        (warn or _stderr)(line)
    seconds = time.perf_counter() - start
    n = len(etas)
    formulas = n * (steps + 1) * len(layout.COLUMNS)
    where = f"{link} (→ {out})" if link != out else f"{link}"
    line = (
        f"wrote {where}: {n} learning-rate sheet{'s' if n != 1 else ''} × {steps + 1:,} "
        f"iterations, {formulas:,} formulas"
    )
    if recalc:
        line += ", values computed by LibreOffice"
    lines = [f"{line} ({seconds:.1f} s)"]
    if kept:
        lines.append(f"kept {', '.join(kept)} (sheet{'s' if len(kept) > 1 else ''} not by bpxl)")
    if replaced:
        lines.append(f"replaced {', '.join(replaced)}")
    if removed:
        lines.append(f"removed {', '.join(removed)} (learning rates not asked for this time)")
    if old is not None and old.legacy:
        lines.append(old.note())
    return "\n".join(lines)


def _stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


@dataclass(frozen=True)
class ExistingSheets:
    """The sheets of a workbook about to be rebuilt: bpxl's (rebuilt or removed), the user's."""

    bpxl: list[str]
    user: list[str]
    legacy: bool  # no record of bpxl's sheets, but a Setup sheet bpxl wrote: an older bpxl
    path: str = ""

    def note(self) -> str:
        return (
            f"({self.path} has no record of the sheets bpxl made, as bpxl before 0.2 wrote "
            f"none; its Setup sheet is bpxl's, so {layout.SETUP_SHEET}, {layout.SUMMARY_SHEET} "
            "and every sheet named 'LR <number>' were taken for bpxl's)"
        )

    def note_short(self) -> str:
        return "" if self.bpxl or self.legacy else " (the workbook has no bpxl sheets)"


def existing_sheets(path: Path) -> ExistingSheets | None:
    """Which sheets of an existing workbook at `path` bpxl made; None if there is no file.

    bpxl's sheets are those its custom document property `bpxl.sheets` lists. A workbook
    without that record counts as one an older bpxl wrote only if its Setup sheet starts as
    bpxl's does; then Setup, Error vs LR and the `LR <number>` sheets are bpxl's. In any
    other workbook every sheet is the user's. Refuses (BpxlError) a file that is not an xlsx
    workbook, so a mistyped --out never replaces some other file.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise BpxlError(f"refusing to replace {path}: cannot read it ({exc.strerror})") from None
    header = f"A{layout.SETUP_HEADER_ROW}"
    try:
        facts = workbook_facts(path, [(layout.SETUP_SHEET, "A1"), (layout.SETUP_SHEET, header)])
    except Exception:  # zip, XML, part errors: all mean the same to the user
        raise BpxlError(f"refusing to replace {path}: it is not an xlsx workbook") from None
    record = _sheets_record(facts.properties.get(SHEETS_PROPERTY))
    if record is not None:
        ours = {t.casefold() for t in record}
        bpxl = [t for t in facts.sheets if t.casefold() in ours]
        return ExistingSheets(bpxl, [t for t in facts.sheets if t not in bpxl], False, str(path))
    setup = facts.cells
    signed = (
        setup.get((layout.SETUP_SHEET, "A1"), "").startswith("bpxl: ")
        and setup.get((layout.SETUP_SHEET, header)) == "name"
    )
    if not signed:
        return ExistingSheets([], list(facts.sheets), False, str(path))
    bpxl = [t for t in facts.sheets if layout.is_bpxl_sheet(t)]
    return ExistingSheets(bpxl, [t for t in facts.sheets if t not in bpxl], True, str(path))


def _sheets_record(text: str | None) -> list[str] | None:
    """The titles in a `bpxl.sheets` property; None when there is none or it is not a list."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, list) or not all(isinstance(t, str) for t in record):
        return None
    return record


def write_workbook(
    values: Mapping[str, float],
    etas: Sequence[float],
    steps: int,
    path: Path,
    *,
    e_total: np.ndarray | None = None,
    carry_from: Path | None = None,
    carry: Sequence[str] = (),
    removed: Sequence[str] = (),
) -> list[str]:
    """Write the complete workbook to `path` (not atomic: build_workbook wraps it).

    `e_total` is NumPy's run (for the charts' axes); the sheets `carry` of `carry_from` are
    carried over (see package.build_package, whose warnings are returned).
    """
    titles = [layout.lr_sheet_title(eta) for eta in etas]
    summary_layout = layout.SummaryLayout(len(etas), steps)
    wb = Workbook()
    setup = wb.active
    setup.title = layout.SETUP_SHEET
    sheets = [wb.create_sheet(title) for title in titles]
    summary = wb.create_sheet(layout.SUMMARY_SHEET)
    wb.calculation.fullCalcOnLoad = True  # Excel and LibreOffice compute everything on open
    record = json.dumps(wb.sheetnames, ensure_ascii=False)
    wb.custom_doc_props.append(StringProperty(name=SHEETS_PROPERTY, value=record))

    if e_total is None:
        with np.errstate(all="ignore"):  # only for the charts' axes; sigmoid may saturate
            e_total = train(values, etas, steps)["E_total"]
    _fill_setup(setup, values, titles, steps)
    iterations = Reference(
        summary,
        min_col=1,
        min_row=summary_layout.iteration_row(0),
        max_row=summary_layout.iteration_row(steps),
    )
    for j, (ws, eta) in enumerate(zip(sheets, etas, strict=True)):
        _fill_lr_sheet(ws, eta, steps, iterations, _log_bounds(e_total[:, j]))
    _fill_summary(summary, titles, summary_layout, _log_bounds(e_total))

    template = io.BytesIO()
    wb.save(template)
    bulks = [_lr_bulk(title, steps) for title in titles]
    bulks.append(_summary_bulk(titles, summary_layout))
    return build_package(
        template.getvalue(),
        Path(path),
        streams={bulk.title: bulk.stream for bulk in bulks},
        stream_level=ZIP_LEVEL,
        carry_from=carry_from,
        carry=carry,
        removed=removed,
    )


# --- the sheets -------------------------------------------------------------------------------


def _text(ws: Worksheet, coordinate: str, text: str, font: Font | None = None) -> None:
    """A text cell that stays text even if it starts with '=' (openpyxl would make a formula)."""
    cell = ws[coordinate]
    cell.value = text
    cell.data_type = "s"
    if font is not None:
        cell.font = font


def _sheet_link(ws: Worksheet, coordinate: str, title: str) -> None:
    """The sheet's name, linking to its first cell (an in-workbook link, no relationship)."""
    _text(ws, coordinate, title)
    cell = ws[coordinate]
    cell.hyperlink = Hyperlink(ref=coordinate, location=f"{layout.sheet_ref(title)}!A1")
    cell.style = "Hyperlink"


def _header(ws: Worksheet, row: int, labels: Sequence[str], first_column: int = 1) -> None:
    for k, label in enumerate(labels):
        coordinate = f"{get_column_letter(first_column + k)}{row}"
        _text(ws, coordinate, label, BOLD)
        cell = ws[coordinate]
        cell.fill, cell.border, cell.alignment = HEADER_FILL, HEADER_BORDER, CENTER


def _lr_entry(ws: Worksheet, row: int, columns: Sequence[str], title: str, steps: int) -> None:
    """η | sheet | final E_total of one LR sheet, live: on Setup and on Error vs LR alike."""
    eta_col, sheet_col, final_col = columns
    ws[f"{eta_col}{row}"] = layout.eta_ref(title)
    _sheet_link(ws, f"{sheet_col}{row}", title)
    ws[f"{final_col}{row}"] = layout.final_e_total_ref(title, steps)
    ws[f"{final_col}{row}"].number_format = layout.COLUMN["E_total"].number_format


def _page_setup(ws: Worksheet, areas: list[str], pages_wide: int, title_rows: str | None) -> None:
    """Landscape A4, scaled to `pages_wide` pages across, each print area on its own pages."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = pages_wide
    ws.page_setup.fitToHeight = 0  # as many pages down as needed
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_area = areas
    if title_rows:
        ws.print_title_rows = title_rows


def _log_bounds(e_total: np.ndarray) -> tuple[float, float] | None:
    """Fixed bounds for the log axis when E_total reaches exactly 0, else None (auto).

    Large learning rates drive E_total to exactly 0 after some hundred steps; LibreOffice then
    draws an empty chart on an auto-scaled log axis, but with fixed bounds it draws the line up
    to the zero and ends it there. Auto-scaling is kept otherwise, as it follows later edits of
    the Setup values; the bounds come from NumPy's run of the same values, whole decades.
    """
    positive = e_total[e_total > 0]
    if positive.size == 0 or positive.size == e_total.size:
        return None
    low, high = np.log10(positive.min()), np.log10(positive.max())
    return 10.0 ** math.floor(low), 10.0 ** math.ceil(high)


def _chart(title: str, steps: int, bounds: tuple[float, float] | None) -> LineChart:
    """A line chart of E_total against iteration, on a log axis: E_total spans many decades."""
    chart = LineChart()
    chart.title = title
    chart.style = 2
    chart.height, chart.width = 10, 20  # cm
    chart.x_axis.title = "iteration"
    chart.y_axis.title = "E_total (log scale)"
    chart.y_axis.scaling.logBase = 10
    if bounds is not None:
        chart.y_axis.scaling.min, chart.y_axis.scaling.max = bounds
    chart.y_axis.number_format = "0.0E+00"
    chart.x_axis.crosses = "min"  # the iteration axis at the bottom, not at E_total = 1
    chart.x_axis.delete = chart.y_axis.delete = False  # openpyxl 3.1 hides axes otherwise
    skip = max(1, steps // 10)
    chart.x_axis.tickLblSkip = chart.x_axis.tickMarkSkip = skip
    return chart


# Explicit line colours (matplotlib's tab10): a chart that leaves them to the workbook's theme
# draws invisible lines once its sheet is moved into a workbook without one (as LibreOffice saves).
LINE_COLORS = ("1F77B4", "FF7F0E", "2CA02C", "D62728", "9467BD",
               "8C564B", "E377C2", "7F7F7F", "BCBD22", "17BECF")  # fmt: skip


def style_series(chart: LineChart) -> None:
    """Straight 1.5 pt lines without markers, each in its own explicit colour."""
    for k, series in enumerate(chart.series):
        series.marker.symbol = "none"
        series.smooth = False
        series.graphicalProperties.line.width = 19050  # 1.5 pt
        series.graphicalProperties.line.solidFill = LINE_COLORS[k % len(LINE_COLORS)]


def _chart_area(anchor_column: int, anchor_row: int, chart: LineChart) -> str:
    """The cells a chart covers (roughly: default column width and row height), to print it."""
    columns = round(chart.width / 1.7) + 1
    rows = round(chart.height / 0.53) + 1
    last = get_column_letter(anchor_column + columns)
    return f"{get_column_letter(anchor_column)}{anchor_row}:{last}{anchor_row + rows}"


def _fill_setup(ws: Worksheet, values: Mapping[str, float], titles: list[str], steps: int) -> None:
    _text(
        ws,
        "A1",
        "bpxl: a 2-2-2 sigmoid network trained by gradient descent in live formulas",
        TITLE,
    )
    _text(
        ws,
        "A2",
        "Change any value in column B: every learning-rate sheet and Error vs LR recompute.",
    )
    _header(ws, layout.SETUP_HEADER_ROW, ["name", "value", "meaning"])
    for name in PARAMS:
        row = layout.SETUP_ROW[name]
        _text(ws, f"A{row}", name, BOLD)
        cell = ws[f"{layout.SETUP_VALUE_COLUMN}{row}"]
        cell.value = float(values[name])
        cell.fill = INPUT_FILL
        _text(ws, f"C{row}", MEANING[name])

    first = column_index_from_string(layout.SETUP_LR_COLUMNS[0])
    _header(ws, layout.SETUP_LR_HEADER_ROW, ["η", "sheet", "final E_total"], first)
    for j, title in enumerate(titles):
        _lr_entry(ws, layout.setup_lr_row(j), layout.SETUP_LR_COLUMNS, title, steps)

    row = layout.SETUP_EQUATIONS_ROW
    for text, heading in EQUATIONS:
        if heading and row > layout.SETUP_EQUATIONS_ROW:
            row += 1
        _text(ws, f"A{row}", text, BOLD if heading else None)
        row += 1

    for col, width in {"A": 12, "B": 12, "C": 22, "D": 3, "E": 8, "F": 12, "G": 16}.items():
        ws.column_dimensions[col].width = width
    _page_setup(ws, [f"A1:H{row}"], 1, None)


def _fill_lr_sheet(
    ws: Worksheet,
    eta: float,
    steps: int,
    iterations: Reference,
    bounds: tuple[float, float] | None,
) -> None:
    _text(ws, "A1", "η", BOLD)
    ws["A1"].alignment = Alignment(horizontal="right")
    eta_cell = ws[layout.ETA_CELL]
    eta_cell.value = float(eta)
    eta_cell.fill = INPUT_FILL
    eta_cell.font = BOLD
    _text(ws, "C1", "learning rate: change it and this sheet recomputes")
    _text(
        ws,
        "A2",
        f"Row {layout.FIRST_ROW} is iteration 0, the initial weights from Setup; every row below "
        "is one gradient-descent step: w ← w − η·∂E/∂w with the gradients of the row above.",
    )
    _header(ws, layout.HEADER_ROW, [c.header for c in layout.COLUMNS])
    for column in layout.COLUMNS:
        cell = ws[f"{column.letter}{layout.FIRST_ROW}"]
        cell.value = column.formula(layout.FIRST_ROW)
        cell.number_format = column.number_format
        wide = column.number_format.endswith("E+00") or column.number_format.count("0") > 4
        ws.column_dimensions[column.letter].width = 13 if wide else 6
    ws.freeze_panes = f"A{layout.FIRST_ROW}"

    last = layout.last_row(steps)
    e_total = layout.COLUMN["E_total"]
    col = column_index_from_string(e_total.letter)
    chart = _chart(f"E_total, {ws.title} (η = {eta:g})", steps, bounds)
    chart.add_data(
        Reference(ws, min_col=col, min_row=layout.HEADER_ROW, max_row=last), titles_from_data=True
    )
    chart.set_categories(iterations)
    chart.legend = None
    style_series(chart)
    anchor_column = len(layout.COLUMNS) + 2  # one empty column right of the table
    ws.add_chart(chart, f"{get_column_letter(anchor_column)}{layout.HEADER_ROW}")

    table = f"A1:{layout.COLUMNS[-1].letter}{min(last, layout.FIRST_ROW + PRINT_ROWS)}"
    chart_area = _chart_area(anchor_column, layout.HEADER_ROW, chart)
    _page_setup(ws, [table, chart_area], 2, f"{layout.HEADER_ROW}:{layout.HEADER_ROW}")


def _fill_summary(
    ws: Worksheet,
    titles: list[str],
    s: layout.SummaryLayout,
    bounds: tuple[float, float] | None,
) -> None:
    _text(ws, "A1", "Error vs learning rate", TITLE)
    threshold_row = int(re.sub(r"\D", "", layout.THRESHOLD_CELL))
    _text(ws, f"A{threshold_row}", "threshold", BOLD)
    cell = ws[layout.THRESHOLD_CELL]
    cell.value = layout.DEFAULT_THRESHOLD
    cell.fill = INPUT_FILL
    cell.number_format = "0.0E+00"
    _text(
        ws,
        f"C{threshold_row}",
        "change it: the first iteration with E_total below it is found again for every η",
    )

    cols = layout.SUMMARY_COLUMNS
    _header(
        ws,
        layout.SUMMARY_HEADER_ROW,
        ["η", "sheet", "final E_total", "first iteration below threshold"],
    )
    ws.row_dimensions[layout.SUMMARY_HEADER_ROW].height = 30
    e_format = layout.COLUMN["E_total"].number_format
    for j, title in enumerate(titles):
        row = s.lr_row(j)
        _lr_entry(ws, row, (cols["eta"], cols["sheet"], cols["final"]), title, s.steps)
        first_below = f"{cols['first_below']}{row}"
        ws[first_below] = ArrayFormula(first_below, s.first_below_formula(j))
        ws[first_below].alignment = Alignment(horizontal="right")

    _header(ws, s.table_header_row, ["iteration", *titles])
    first = s.iteration_row(0)
    ws[f"A{first}"] = 0
    for j, title in enumerate(titles):
        cell = ws[f"{s.lr_column(j)}{first}"]
        cell.value = layout.e_total_ref(title, 0)
        cell.number_format = e_format
    for k in range(len(titles) + 1):
        ws.column_dimensions[get_column_letter(k + 1)].width = 14

    chart = _chart("E_total against iteration, one line per learning rate", s.steps, bounds)
    chart.height, chart.width = 12, 24
    for j in range(len(titles)):
        col = column_index_from_string(s.lr_column(j))
        chart.add_data(
            Reference(
                ws, min_col=col, min_row=s.table_header_row, max_row=s.iteration_row(s.steps)
            ),
            titles_from_data=True,
        )
    chart.set_categories(Reference(ws, min_col=1, min_row=first, max_row=s.iteration_row(s.steps)))
    chart.legend.position = "r"
    style_series(chart)
    # Frozen above the first iteration: the per-LR table and the header of the iteration table
    # stay in view while the iterations scroll. The chart sits below the frozen rows, beside the
    # iterations, so it scrolls whole instead of being cut by the split.
    ws.freeze_panes = f"A{first}"
    anchor_column = max(len(titles) + 3, 6)
    chart_row = first
    ws.add_chart(chart, f"{get_column_letter(anchor_column)}{chart_row}")

    # Every column of both tables: the per-LR table alone reaches D (first below threshold).
    last_column = get_column_letter(max(len(titles) + 1, len(cols)))
    table = f"A1:{last_column}{min(s.iteration_row(s.steps), s.iteration_row(PRINT_ROWS))}"
    chart_area = _chart_area(anchor_column, chart_row, chart)
    _page_setup(ws, [chart_area, table], 1, None)


# --- streaming the bulk rows ------------------------------------------------------------------


@dataclass(frozen=True)
class _Bulk:
    """Rows `first_row`..`last_row` of one sheet, written as XML from one pattern per row.

    The row above `first_row` is the template: openpyxl wrote it (with the same columns), and its
    cells' style ids are reused. Each cell pattern is the inner XML of a cell with {r} (this
    row), {p} (the row above), {k} (the iteration) and {s} (the iteration's row on an LR sheet).
    """

    title: str
    first_row: int
    last_row: int
    first_iteration: int  # the iteration of first_row
    cells: tuple[tuple[str, str], ...]  # (column letter, inner XML pattern)

    def rows(self, sheet_xml: str) -> Iterator[str]:
        """The sheet's XML, with the bulk rows after the template row."""
        end = sheet_xml.rindex("</sheetData>")
        head, tail = sheet_xml[:end], sheet_xml[end:]
        template = head[head.rfind("<row ") :]
        number = re.match(r'<row r="(\d+)"', template)
        if not number or int(number.group(1)) != self.first_row - 1 or "</row>" not in template:
            raise AssertionError(f"{self.title}: row {self.first_row - 1} must be the last row")
        styles = dict(re.findall(r'<c r="([A-Z]+)\d+" s="(\d+)"', template))
        row_pattern = (
            '<row r="{r}">'
            + "".join(
                f'<c r="{letter}{{r}}"'
                + (f' s="{styles[letter]}"' if letter in styles else "")
                + f">{inner}</c>"
                for letter, inner in self.cells
            )
            + "</row>"
        )
        last_column = self.cells[-1][0]
        yield re.sub(
            r'<dimension ref="[^"]*"\s*/>',
            f'<dimension ref="A1:{last_column}{self.last_row}"/>',
            head,
            count=1,
        )
        offset = self.first_iteration - self.first_row
        for start in range(self.first_row, self.last_row + 1, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, self.last_row + 1)
            yield "".join(
                row_pattern.format(
                    r=r, p=r - 1, k=r + offset, s=layout.row_of_iteration(r + offset)
                )
                for r in range(start, stop)
            )
        yield tail

    def stream(self, sheet_xml: bytes) -> Iterator[bytes]:
        """`rows` as the bytes of the sheet's part."""
        for part in self.rows(sheet_xml.decode("utf-8")):
            yield part.encode("utf-8")


def _formula_xml(formula: str) -> str:
    """A formula pattern (leading '=') as the inner XML of its cell."""
    return f"<f>{escape(formula[1:])}</f>"


def _lr_bulk(title: str, steps: int) -> _Bulk:
    cells = tuple((c.letter, _formula_xml(c.pattern())) for c in layout.COLUMNS)
    return _Bulk(title, layout.FIRST_ROW + 1, layout.last_row(steps), 1, cells)


def _summary_bulk(titles: list[str], s: layout.SummaryLayout) -> _Bulk:
    """Iterations 1..N of the E_total table: the iteration, then live references to each sheet."""
    cells = [("A", "<v>{k}</v>")]
    for j, title in enumerate(titles):
        # layout.e_total_ref(title, k) with the row left open, e.g. ='LR 0.1'!W{s}
        ref = re.sub(r"\d+$", "{s}", layout.e_total_ref(title, 0))
        cells.append((s.lr_column(j), _formula_xml(ref)))
    first = s.iteration_row(1)
    return _Bulk(layout.SUMMARY_SHEET, first, s.iteration_row(s.steps), 1, tuple(cells))
