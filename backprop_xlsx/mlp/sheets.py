"""The sheets a person reads: Setup, each LR sheet's header and first iteration, Error vs LR.

openpyxl writes these (styles, links, charts, page setup) because they are small; the bulk rows
below them are streamed by workbook.py from the same layout, reusing the styles set here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from openpyxl.chart import Reference, ScatterChart
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet

from backprop_xlsx.mlp import layout, sheetview, summary_layout
from backprop_xlsx.mlp.compare import optimizer_equations, optimizer_names, optimizer_note
from backprop_xlsx.mlp.equations import EQUATIONS, general_equations, network_fields, network_title
from backprop_xlsx.xlsx.formula import cell_key
from backprop_xlsx.xlsx.look import EXERCISE_FILL, INPUT_FILL

BOLD = Font(bold=True)
TITLE = Font(bold=True, size=14)
HEADER_FILL = PatternFill("solid", start_color="DDEBF7")
HEADER_BORDER = Border(bottom=Side(style="thin"))
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)

# --- the sheets -------------------------------------------------------------------------------

PRINT_ROWS = 40  # iterations of an LR sheet's table that go into its print area
PRINT_COLUMNS = 16  # columns of an LR sheet's table per printed page, at most


def write_text(ws: Worksheet, coordinate: str, text: str, font: Font | None = None) -> None:
    """A text cell that stays text even if it starts with '=' (openpyxl would make a formula)."""
    cell = ws[coordinate]
    cell.value = text
    cell.data_type = "s"
    if font is not None:
        cell.font = font


def write_sheet_link(ws: Worksheet, coordinate: str, title: str) -> None:
    """The sheet's name, linking to its first cell (an in-workbook link, no relationship)."""
    write_text(ws, coordinate, title)
    cell = ws[coordinate]
    cell.hyperlink = Hyperlink(ref=coordinate, location=f"{layout.sheet_ref(title)}!A1")
    cell.style = "Hyperlink"


def write_header(ws: Worksheet, row: int, labels: Sequence[str], first_column: int = 1) -> None:
    """`labels` as a header row from `first_column` on: bold, filled, bordered, centred."""
    for k, label in enumerate(labels):
        coordinate = f"{get_column_letter(first_column + k)}{row}"
        write_text(ws, coordinate, label, BOLD)
        cell = ws[coordinate]
        cell.fill, cell.border, cell.alignment = HEADER_FILL, HEADER_BORDER, CENTER


def _lr_entry(
    ws: Worksheet, row: int, columns: Sequence[str], title: str, steps: int, letter: str
) -> None:
    """η | sheet | final E_total of one LR sheet, live: on Setup and on Error vs LR alike.

    `letter` is the E_total column of the LR sheets."""
    eta_col, sheet_col, final_col = columns
    ws[f"{eta_col}{row}"] = summary_layout.eta_ref(title)
    write_sheet_link(ws, f"{sheet_col}{row}", title)
    ws[f"{final_col}{row}"] = summary_layout.final_e_total_ref(title, steps, letter)
    ws[f"{final_col}{row}"].number_format = layout.FORMAT_SMALL


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


def log_bounds(e_total: np.ndarray) -> tuple[float, float] | None:
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


def _chart_area(anchor_column: int, anchor_row: int, chart: ScatterChart) -> str:
    """The cells a chart covers (roughly: default column width and row height), to print it."""
    columns = round(chart.width / 1.7) + 1
    rows = round(chart.height / 0.53) + 1
    last = get_column_letter(anchor_column + columns)
    return f"{get_column_letter(anchor_column)}{anchor_row}:{last}{anchor_row + rows}"


def fill_setup(
    ws: Worksheet,
    sheet: layout.SheetLayout,
    titles: list[str],
    steps: int,
    letters: Sequence[str] | None = None,
    optimizers: Sequence[str] = ("sgd",),
) -> None:
    """`letters`: each training sheet's E_total column (the layout's by default); the
    optimizers' names go beside the sheets, their rules below the equations."""
    write_text(
        ws,
        "A1",
        f"bpxl: {network_title(sheet)} trained by "
        + ("gradient descent" if sheet.batching is None else "mini-batch gradient descent")
        + " in live formulas",
        TITLE,
    )
    plain = set(optimizers) == {"sgd"}
    everything = (
        "every learning-rate sheet and Error vs LR recompute."
        if plain
        else f"every training sheet and {layout.OPTIMIZER_SHEET} recompute."
    )
    write_text(ws, "A2", f"Change any value in column B: {everything}")
    write_header(ws, layout.SETUP_HEADER_ROW, ["name", "value", "meaning"])
    for entry in sheet.setup:
        row = sheet.setup_row[entry.key]
        write_text(ws, f"A{row}", entry.name, BOLD)
        cell = ws[f"{layout.SETUP_VALUE_COLUMN}{row}"]
        cell.value = entry.value
        cell.fill = INPUT_FILL
        write_text(ws, f"C{row}", entry.meaning)

    first = column_index_from_string(layout.SETUP_LR_COLUMNS[0])
    loss = sheet.loss_key
    write_header(ws, layout.SETUP_LR_HEADER_ROW, ["η", "sheet", f"final {loss}"], first)
    letters = letters or [sheet.letter[loss]] * len(titles)
    for j, (title, letter) in enumerate(zip(titles, letters, strict=True)):
        _lr_entry(ws, layout.setup_lr_row(j), layout.SETUP_LR_COLUMNS, title, steps, letter)
    if not plain:  # beside the list: which optimizer each sheet runs, as torch.optim calls it
        column = first + len(layout.SETUP_LR_COLUMNS)
        write_header(ws, layout.SETUP_LR_HEADER_ROW, ["optimizer"], column)
        for j, name in enumerate(optimizer_names(titles)):
            write_text(ws, f"{get_column_letter(column)}{layout.setup_lr_row(j)}", name)

    label, value = layout.SETUP_NETWORK_COLUMNS
    write_header(ws, layout.SETUP_HEADER_ROW, ["network", ""], column_index_from_string(label))
    for k, (name, text) in enumerate(network_fields(sheet).items()):
        row = layout.SETUP_FIRST_ROW + k
        write_text(ws, f"{label}{row}", name, BOLD)
        write_text(ws, f"{value}{row}", text)

    if sheet.batching is not None:
        _fill_schedule(ws, sheet)
    start = layout.setup_equations_row(len(sheet.setup))
    row = start
    equations = list(EQUATIONS if sheet.classic else general_equations(sheet))
    if not plain:
        equations += optimizer_equations(optimizers)
    for text, heading in equations:
        if heading and row > start:
            row += 1
        write_text(ws, f"A{row}", text, BOLD if heading else None)
        row += 1

    widths = {"A": 12, "B": 12, "C": 22, "D": 3, "E": 8, "F": 12, "G": 16, "H": 3, "I": 12}
    if not plain:
        widths["H"] = 11
    for col, width in (widths | {"J": 30}).items():
        ws.column_dimensions[col].width = width
    _page_setup(ws, [f"A1:J{row}"], 1, None)


def _fill_schedule(ws: Worksheet, sheet: layout.SheetLayout) -> None:
    """A mini-batch run's schedule: epoch in L, then the sample at each position of its shuffle."""
    assert sheet.batching is not None
    epoch = layout.SETUP_SCHEDULE_EPOCH_COLUMN
    first = layout.SETUP_SCHEDULE_FIRST_COLUMN
    seed, S = sheet.batching.seed, sheet.training_samples
    write_text(
        ws,
        f"{epoch}{layout.SETUP_HEADER_ROW - 1}",
        f"batch schedule: sample number at each position of each epoch's shuffle "
        f"(np.random.default_rng({seed}).permutation({S}) + 1, once per epoch)",
        BOLD,
    )
    write_header(ws, layout.SETUP_HEADER_ROW, ["epoch", *map(str, range(1, S + 1))],
            column_index_from_string(epoch))  # fmt: skip
    for e, permutation in enumerate(sheet.schedule().tolist()):
        row = layout.SETUP_FIRST_ROW + e
        ws.cell(row, first - 1, e + 1)
        for p, n in enumerate(permutation):
            ws.cell(row, first + p, n)


def fill_lr_sheet(
    ws: Worksheet,
    sheet: layout.SheetLayout,
    eta: float,
    steps: int,
    bounds: tuple[float, float] | None,
    blank: frozenset[str] = frozenset(),
) -> None:
    """η in row 1, the charts in the band of row 2, the header in row 3, one iteration a row;
    frozen at the header and the iteration and input columns (see sheetview)."""
    write_text(ws, "A1", "η", BOLD)
    ws["A1"].alignment = Alignment(horizontal="right")
    eta_cell = ws[layout.ETA_CELL]
    eta_cell.value = float(eta)
    eta_cell.fill = INPUT_FILL
    eta_cell.font = BOLD
    note = (
        "Each row is one gradient-descent step: w ← w − η·∂E/∂w with the gradients of the row "
        "above. Iteration 0 holds the initial weights from Setup."
    )
    if sheet.optimizer.name != "sgd":
        note = optimizer_note(sheet.optimizer)
    if sheet.batching is not None:
        note += (
            f" Each step is one mini-batch of {sheet.samples} of the {sheet.training_samples} "
            "samples (epoch, n⁽ᵐ⁾: from the schedule on Setup); x⁽ᵐ⁾ is x of batch position m, "
            "E_train the loss on all samples."
        )
    elif sheet.samples > 1:
        note += f" Each step is one full batch of all {sheet.samples} samples"
        note += "; x⁽ˢ⁾ is x of sample s."
    frozen = sheetview.frozen_columns(sheet)
    if sheetview.frozen_width(sheet) >= sheetview.NOTE_WIDTH:  # under η, left of the charts
        write_text(ws, "C1", "learning rate: change it and this sheet recomputes")
        note_cell = f"A{sheetview.NOTE_ROW}"
        write_text(ws, note_cell, note)
        ws[note_cell].alignment = Alignment(wrap_text=True, vertical="top")
        ws.merge_cells(f"{note_cell}:{get_column_letter(frozen)}{sheetview.NOTE_ROW}")
    else:  # a narrow frozen strip: the note goes on η's line
        write_text(ws, "C1", f"learning rate: change it and this sheet recomputes. {note}")
    ws.row_dimensions[sheetview.CHART_ROW].height = sheetview.CHART_ROW_HEIGHT
    columns = sheet.columns
    write_header(ws, layout.HEADER_ROW, [c.header for c in columns])
    for column in columns:
        cell = ws[f"{column.letter}{layout.FIRST_ROW}"]
        cell.value = column.formula(layout.FIRST_ROW)
        cell.number_format = column.number_format
        if column.key in blank:  # yellow and empty in every row (the bulk rows copy the style)
            cell.value, cell.fill = None, EXERCISE_FILL
            cell.comment = Comment(layout.exercise_note(column), "bpxl", width=300, height=120)
        ws.column_dimensions[column.letter].width = sheetview.column_width(column)
    ws[f"{sheet.letter[layout.ITERATION]}{layout.FIRST_ROW}"].font = BOLD
    ws.freeze_panes = sheetview.freeze_cell(sheet)
    sheetview.lr_charts(ws, sheet, eta, steps, bounds)

    last = layout.last_row(steps)
    right = max(len(columns), sheetview.charts_end_column(sheet))
    areas = [f"A1:{get_column_letter(right)}{min(last, layout.FIRST_ROW + PRINT_ROWS)}"]
    # about 16 columns a page across, so a wide general sheet still prints readably (seed: 2)
    pages_wide = max(2, math.ceil(len(columns) / PRINT_COLUMNS))
    _page_setup(ws, areas, pages_wide, f"{layout.HEADER_ROW}:{layout.HEADER_ROW}")
    if frozen:
        ws.print_title_cols = f"A:{get_column_letter(frozen)}"


def fill_summary(
    ws: Worksheet,
    sheet: layout.SheetLayout,
    titles: list[str],
    s: summary_layout.SummaryLayout,
    bounds: tuple[float, float] | None,
    letters: Sequence[str] | None = None,
    heading: str = "Error vs learning rate",
) -> None:
    """The comparison of the training sheets (Error vs LR, or Optimizers); `letters` is each
    sheet's loss column (the layout's by default)."""
    loss = sheet.loss_key
    letters = letters or [sheet.letter[loss]] * len(titles)
    write_text(ws, "A1", heading, TITLE)
    threshold_row, _ = cell_key(summary_layout.THRESHOLD_CELL)
    write_text(ws, f"A{threshold_row}", "threshold", BOLD)
    cell = ws[summary_layout.THRESHOLD_CELL]
    cell.value = summary_layout.DEFAULT_THRESHOLD
    cell.fill = INPUT_FILL
    cell.number_format = "0.0E+00"
    # The instruction wraps within the tables' columns, so neither screen nor print cuts it.
    last_column = max(len(titles) + 1, len(summary_layout.SUMMARY_COLUMNS))
    widths = {"A": 14, "B": 14, "C": 14, "D": 17} | {
        get_column_letter(k + 1): 14 for k in range(4, last_column)
    }
    for col, width in widths.items():
        ws.column_dimensions[col].width = width
    every = "η" if heading == "Error vs learning rate" else "sheet"
    instruction = (
        f"change it: the first iteration with {loss} below it is found again for every {every}"
    )
    write_text(ws, f"C{threshold_row}", instruction)
    ws[f"C{threshold_row}"].alignment = Alignment(wrap_text=True, vertical="center")
    for label in (f"A{threshold_row}", summary_layout.THRESHOLD_CELL):
        ws[label].alignment = Alignment(vertical="center")
    ws.merge_cells(f"C{threshold_row}:{get_column_letter(last_column)}{threshold_row}")
    room = sum(widths[get_column_letter(k)] for k in range(3, last_column + 1)) - 2
    ws.row_dimensions[threshold_row].height = 15 * math.ceil(len(instruction) / room)

    cols = summary_layout.SUMMARY_COLUMNS
    write_header(
        ws,
        summary_layout.SUMMARY_HEADER_ROW,
        ["η", "sheet", f"final {loss}", "first iteration below threshold"],
    )
    ws.row_dimensions[summary_layout.SUMMARY_HEADER_ROW].height = 30
    e_format = layout.FORMAT_SMALL
    for j, (title, letter) in enumerate(zip(titles, letters, strict=True)):
        row = s.lr_row(j)
        _lr_entry(ws, row, (cols["eta"], cols["sheet"], cols["final"]), title, s.steps, letter)
        ws[f"{cols['eta']}{row}"].alignment = Alignment(horizontal="center")
        first_below = f"{cols['first_below']}{row}"
        ws[first_below] = ArrayFormula(first_below, s.first_below_formula(j))
        ws[first_below].alignment = Alignment(horizontal="right")

    write_header(ws, s.table_header_row, ["iteration", *titles])
    first = s.iteration_row(0)
    ws[f"A{first}"] = 0
    for j, (title, letter) in enumerate(zip(titles, letters, strict=True)):
        cell = ws[f"{s.lr_column(j)}{first}"]
        cell.value = summary_layout.e_total_ref(title, 0, letter)
        cell.number_format = e_format

    per = "learning rate" if every == "η" else "sheet"
    chart = sheetview.e_total_chart(
        f"{loss} against iteration, one line per {per}", s.steps, bounds
    )
    chart.height, chart.width = 10, 18
    last = s.iteration_row(s.steps)
    x = Reference(ws, min_col=1, min_row=first, max_row=last)
    columns = [column_index_from_string(s.lr_column(j)) for j in range(len(titles))]
    sheetview.add_lines(chart, ws, x, columns, s.table_header_row, last)
    chart.legend.position = "r"
    chart.legend.txPr = sheetview.small_text()
    # Frozen above the first iteration: the per-LR table and the header of the iteration table
    # stay in view while the iterations scroll. The chart sits below the frozen rows, beside the
    # iterations, so it scrolls whole instead of being cut by the split.
    ws.freeze_panes = f"A{first}"
    anchor_column = max(len(titles) + 3, 6)
    chart_row = first
    ws.add_chart(chart, f"{get_column_letter(anchor_column)}{chart_row}")

    # Every column of both tables: the per-LR table alone reaches D (first below threshold).
    table = f"A1:{get_column_letter(last_column)}{min(last, s.iteration_row(PRINT_ROWS))}"
    chart_area = _chart_area(anchor_column, chart_row, chart)
    _page_setup(ws, [chart_area, table], 1, None)
