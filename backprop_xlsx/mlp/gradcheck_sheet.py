"""Writing the gradient-check sheet (`bpxl build --gradient-check`), laid out by mlp.gradcheck.

openpyxl writes what a person reads first (the inputs, the headers, the first parameter's row,
the colour rule); the other parameters' rows, up to a million formulas, are streamed as XML in
the first row's styles (xlsx.stream.Bulk). Every formula cell carries NumPy's value for
iteration 0 and h = 1e-5, so the file opens with numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import absolute_coordinate, coordinate_to_tuple
from openpyxl.worksheet.worksheet import Worksheet

from backprop_xlsx.mlp import gradcheck as G
from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.sheets import BOLD, TITLE, write_header, write_sheet_link, write_text
from backprop_xlsx.xlsx.formula import column_number
from backprop_xlsx.xlsx.look import INPUT_FILL
from backprop_xlsx.xlsx.stream import Bulk

PASS_FILL = PatternFill("solid", start_color="C6EFCE")  # green: within the threshold
FAIL_FILL = PatternFill("solid", start_color="FFC7CE")  # red: past it
GRADIENT_FORMAT = "0.0000000000E+00"  # 11 digits: where the two gradients part shows
FORMATS = {
    "name": "General",
    "theta": layout.FORMAT_VALUE,
    "cd": GRADIENT_FORMAT,
    "backprop": GRADIENT_FORMAT,
    "rel": "0.0E+00",
}

INPUTS = (  # (cell, label, note); the yellow ones hold a number typed in
    (G.H_CELL, "h", "the step of the central difference: change it and every row recomputes"),
    (G.ITERATION_CELL, "iteration", "the iteration of the LR sheet whose gradients are checked"),
    (G.THRESHOLD_CELL, "threshold", "a relative error at or below it is green, above it red"),
    (G.E_TOTAL_CELL, "E_total", "at that iteration, read from the LR sheet"),
    (
        G.NOISE_CELL,
        "noise",
        f"rounding noise of a central difference: {G.NOISE_FACTOR}·ε·max(E_total, "
        "samples × outputs)/h, ε = 2⁻⁵²",
    ),
    (
        G.FLOOR_CELL,
        "floor",
        "noise/threshold: a gradient smaller than this is judged by |cd − ∂E/∂θ| ≤ noise",
    ),
)


def fill_gradcheck(ws: Worksheet, g: G.GradCheckLayout, values: Mapping[str, float]) -> Bulk:
    """Write the sheet's head and first parameter row; return the other rows as a Bulk.

    `values` are NumPy's values of every formula cell (GradCheckLayout.values)."""
    write_text(ws, "A1", "Gradient check: backprop's ∂E/∂θ against a central difference", TITLE)
    write_text(
        ws,
        "A2",
        "Each row nudges one parameter θ by +h and by −h and runs the whole forward pass "
        "twice by formulas (the columns on the right): (E(θ + h) − E(θ − h))/2h beside the "
        "LR sheet's ∂E/∂θ. Change h or the iteration (yellow) and every row recomputes.",
    )
    formulas = g.cells()
    inputs = {G.H_CELL: G.DEFAULT_H, G.ITERATION_CELL: 0, G.THRESHOLD_CELL: G.DEFAULT_THRESHOLD}
    for cell, label, note in INPUTS:
        row = cell[1:]
        write_text(ws, f"A{row}", label, BOLD)
        write_text(ws, f"C{row}", note)
        if cell in inputs:
            ws[cell] = inputs[cell]
            ws[cell].fill = INPUT_FILL
        else:
            ws[cell] = formulas[cell]
        ws[cell].number_format = "0" if cell == G.ITERATION_CELL else "0.0E+00"
    sheet_row = G.LR_SHEET_CELL[1:]
    write_text(ws, f"A{sheet_row}", "sheet", BOLD)
    write_sheet_link(ws, G.LR_SHEET_CELL, g.lr_title)
    write_text(ws, f"C{sheet_row}", "the LR sheet whose θ and ∂E/∂θ are read")

    write_header(
        ws, G.HEADER_ROW, ["θ", "value", "central difference", "backprop ∂E/∂θ", "rel. error"]
    )
    width = len(g.pass_columns)
    for k, side in enumerate(G.SIDES):
        first = G.FIRST_PASS_COLUMN + k * width
        sign = "+" if side == "+" else "−"
        label = f"forward pass with θ {sign} h"
        write_text(ws, f"{get_column_letter(first)}{G.BLOCK_ROW}", label, BOLD)
        write_header(ws, G.HEADER_ROW, [c.header for c in g.pass_columns], first)

    bulk = Bulk(G.GRADCHECK_SHEET)
    bulk.prototype.update({name: (G.FIRST_ROW, column_number(c)) for name, c in G.COLUMNS.items()})
    bulk.prototype["za"] = (G.FIRST_ROW, G.FIRST_PASS_COLUMN)
    bulk.prototype["E"] = (G.FIRST_ROW, column_number(g.letter["+", "E_total"]))
    for p in g.params:
        r = g.row[p]
        write_text(ws, f"A{r}", p, BOLD)  # the names through openpyxl: one cell a row
        cells = [(f"{letter}{r}", name, FORMATS[name]) for name, letter in G.COLUMNS.items()]
        for (_, key), letter in g.letter.items():
            if key == "E_total":
                cells.append((f"{letter}{r}", "E", layout.FORMAT_SMALL))
            else:
                cells.append((f"{letter}{r}", "za", layout.FORMAT_VALUE))
        for a1, style, number_format in cells[1:]:
            if r == G.FIRST_ROW:
                ws[a1] = formulas[a1]
                ws[a1].number_format = number_format
            else:
                bulk.formula(*coordinate_to_tuple(a1), formulas[a1], style, values.get(a1))
    rel = f"{G.COLUMNS['rel']}{G.FIRST_ROW}:{G.COLUMNS['rel']}{g.last_row}"
    threshold = absolute_coordinate(G.THRESHOLD_CELL)
    ws.conditional_formatting.add(
        rel, CellIsRule(operator="lessThanOrEqual", formula=[threshold], fill=PASS_FILL)
    )
    ws.conditional_formatting.add(
        rel, CellIsRule(operator="greaterThan", formula=[threshold], fill=FAIL_FILL)
    )
    widths = {"A": 11, "B": 16, "C": 21, "D": 21, "E": 11}
    for col, w in widths.items():
        ws.column_dimensions[col].width = w
    for c in range(G.FIRST_PASS_COLUMN, g.last_column + 1):
        ws.column_dimensions[get_column_letter(c)].width = 13
    ws.freeze_panes = f"{get_column_letter(G.FIRST_PASS_COLUMN)}{G.FIRST_ROW}"
    return bulk


def gradcheck_stream(bulk: Bulk, values: Mapping[str, float]) -> Callable[[bytes], Iterable[bytes]]:
    """The sheet's part: openpyxl's XML with the bulk rows merged in and the values cached."""
    bulk.top = {a1: v for a1, v in values.items() if coordinate_to_tuple(a1)[0] <= G.FIRST_ROW}
    return bulk.stream
