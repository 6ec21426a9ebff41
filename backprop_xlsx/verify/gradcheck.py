"""The check of the Gradient check sheet: its formulas against bpxl's, its values against NumPy.

Both, as for the LR sheets, because each alone can be fooled: a pass that nudges the wrong
weight, by −h, by a typed 1e-5 instead of the h cell, or reads θ from the wrong iteration is named
by its cell even where its value happens to be right; and the values, from the engine, are held
to NumPy's run at the sheet's own iteration and h.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
from openpyxl.utils.cell import coordinate_to_tuple

from backprop_xlsx.mlp import gradcheck as G
from backprop_xlsx.mlp import layout
from backprop_xlsx.report import INPUT_SEED, Finding, Report
from backprop_xlsx.xlsx.formula import (
    Ref,
    Token,
    Unsupported,
    cell_key,
    column_number,
    compile_tokens,
    relative_key,
    tokenize,
)
from backprop_xlsx.xlsx.read import Cell, Package, cell_number

Cells = dict[tuple[int, int], Cell]
EQUIVALENCE_SETS = 16  # random input sets on which a formula spelled otherwise must agree
EQUIVALENCE_RTOL = 1e-9  # rounding of a rearranged formula; a wrong one is off by far more
# A value saved with 15 significant digits (LibreOffice does) is within 5e-15 of the double it
# stood for: twice that, relative to the central difference and the gradient, bounds how far the
# relative error recomputed from the saved values may be from the one the engine computed.
SAVED_DIGITS = 1e-14


def read_gradcheck_cells(pkg: Package, sheet: layout.SheetLayout) -> Cells | None:
    """The Gradient check sheet's cells that the network's layout has, or None when the
    workbook has no such sheet."""
    title = pkg.titles.get(G.GRADCHECK_SHEET.casefold())
    if title is None:
        return None
    g = G.GradCheckLayout(sheet, "", 0)  # its size does not depend on the LR sheet
    return pkg.cells(title, g.last_column, g.last_row)


def check_gradcheck(
    cells: Cells,
    sheet: layout.SheetLayout,
    steps: Mapping[str, int],
    expected: Mapping[str, np.ndarray],
    setup: Mapping[str, float] | None,
    titles: dict[str, str],
    report: Report,
) -> int:
    """Check the sheet; return how many cells were compared with NumPy.

    `steps` maps each LR sheet's title to its last iteration, `expected` to NumPy's run of it
    (rows: iterations, columns: `sheet.keys`), `titles` the workbook's titles by casefold."""
    named = cells.get(cell_key(G.LR_SHEET_CELL))
    title = named.value if named is not None else None
    if title not in steps:
        report.add(_finding(G.LR_SHEET_CELL, "not the title of an LR sheet", found=title))
        return 0
    g = G.GradCheckLayout(sheet, title, steps[title])
    for p in g.params:
        a1 = f"{G.COLUMNS['name']}{g.row[p]}"
        found = cells.get(cell_key(a1))
        if found is None or found.value != p:
            report.add(_finding(a1, "parameter name", p, found and found.value))
    formulas = g.cells()
    _check_formulas(cells, g, formulas, titles, report)
    inputs = _inputs(cells, steps[title], report)
    if inputs is None or title not in expected or setup is None:
        return 0
    h, k, threshold = inputs
    row = dict(zip(sheet.keys, expected[title][k], strict=True))
    want = g.values(setup, *g.at_iteration(row), h, threshold)
    return _check_values(cells, g, want, report)


def _finding(a1: str, problem: str, expected: object = None, found: object = None) -> Finding:
    return Finding(G.GRADCHECK_SHEET, a1, problem, expected, found)


def _check_formulas(
    cells: Cells,
    g: G.GradCheckLayout,
    formulas: Mapping[str, str],
    titles: dict[str, str],
    report: Report,
) -> None:
    """Each formula cell holds the one mlp.gradcheck lays out (token by token, references
    relative to the cell; spaces, quoting and the case of names ignored) or one that computes
    the same on random values of every cell it reads."""
    own = G.GRADCHECK_SHEET
    for a1, want in formulas.items():
        row, col = cell_key(a1)
        cell = cells.get((row, col))
        if cell is None or cell.formula is None:
            found = cell and cell.value
            report.add(
                Finding(own, a1, f"{g.describe(a1)}: no formula", None, found, None, want[1:])
            )
            continue
        if cell.formula == want[1:]:  # as written: most cells, and no tokenizing
            continue
        expected = tokenize(want[1:], row, col, own, titles)
        try:
            found = tokenize(cell.formula, row, col, own, titles)
        except Unsupported as exc:
            problem = f"{g.describe(a1)}: formula cannot be read ({exc})"
            report.add(Finding(own, a1, problem, None, None, cell.formula, want[1:]))
            continue
        if relative_key(found) != relative_key(expected) and not _same_on_random_inputs(
            found, expected, row, col
        ):
            problem = f"{g.describe(a1)}: formula differs from the gradient check's"
            report.add(Finding(own, a1, problem, None, None, cell.formula, want[1:]))


def _same_on_random_inputs(found: list[Token], expected: list[Token], row: int, col: int) -> bool:
    """Whether a formula spelled otherwise than bpxl's computes the same: both compiled to NumPy
    and run on EQUIVALENCE_SETS random draws of every cell they read, (0.1, 1) each, so that a
    sign, an h, a weight or a cell that differs shows. INDEX and ranges do not compile: a θ or
    ∂E/∂θ must be read as bpxl reads it."""
    rng = np.random.default_rng(INPUT_SEED)
    draws: dict[tuple[str | None, int, int], np.ndarray] = {}

    def resolve(ref: Ref) -> Callable[[object], np.ndarray]:
        where = (
            ref.sheet,
            ref.col if ref.col_abs else col + ref.col,
            ref.row if ref.row_abs else row + ref.row,
        )
        if where not in draws:
            draws[where] = rng.uniform(0.1, 1.0, EQUIVALENCE_SETS)
        value = draws[where]
        return lambda env: value

    try:
        a = np.asarray(compile_tokens(found, resolve)({}), dtype=np.float64)
        b = np.asarray(compile_tokens(expected, resolve)({}), dtype=np.float64)
    except (Unsupported, ValueError, TypeError):
        return False
    with np.errstate(all="ignore"):
        close = np.abs(a - b) <= EQUIVALENCE_RTOL * np.maximum(np.abs(a), np.abs(b))
    return bool(np.all(np.isfinite(b)) and np.all(close))


def _inputs(cells: Cells, steps: int, report: Report) -> tuple[float, int, float] | None:
    """h, the iteration and the threshold as typed; None (and a finding) when one is unusable."""
    h = cell_number(cells.get(cell_key(G.H_CELL)))
    k = cell_number(cells.get(cell_key(G.ITERATION_CELL)))
    threshold = cell_number(cells.get(cell_key(G.THRESHOLD_CELL)))
    ok = True
    if h is None or not math.isfinite(h) or not 0 < h < 1:
        report.add(_finding(G.H_CELL, "h must be a number between 0 and 1", found=h))
        ok = False
    if k is None or k != int(k) or not 0 <= k <= steps:
        problem = f"the iteration must be a whole number from 0 to {steps}"
        report.add(_finding(G.ITERATION_CELL, problem, found=k))
        ok = False
    if threshold is None or not math.isfinite(threshold) or threshold <= 0:
        report.add(
            _finding(G.THRESHOLD_CELL, "the threshold must be a positive number", found=threshold)
        )
        ok = False
    return (float(h), int(k), float(threshold)) if ok else None


def _check_values(
    cells: Cells, g: G.GradCheckLayout, want: Mapping[str, float], report: Report
) -> int:
    """Every formula cell's value against NumPy's: every z, a and E_total of both passes, θ and
    ∂E/∂θ within the LR sheets' tolerance; the central difference within the rounding noise the
    sheet states (the engine and NumPy round E(θ ± h) apart by about ε·E_total, which the
    division by 2h magnifies); the relative error from the sheet's own central difference,
    gradient and floor."""
    where = {a1: coordinate_to_tuple(a1) for a1 in want}  # (row, column)
    scale: dict[int | str, float] = {}  # the largest |value| of each column, as the LR sheets use
    for a1, value in want.items():
        column = _column(a1, *where[a1])
        scale[column] = max(scale.get(column, 0.0), abs(value))
    noise = want[G.NOISE_CELL]
    cd_col, bp_col, rel_col = (column_number(G.COLUMNS[k]) for k in ("cd", "backprop", "rel"))
    floor = cell_number(cells.get(cell_key(G.FLOOR_CELL)))
    checked = 0
    for a1, expected in want.items():
        row, col = where[a1]
        cell = cells.get((row, col))
        found = cell_number(cell)
        if col == rel_col and row >= G.FIRST_ROW:
            cd = cell_number(cells.get((row, cd_col)))
            bp = cell_number(cells.get((row, bp_col)))
            if cd is None or bp is None or floor is None:
                continue  # named by their own checks
            below = max(abs(cd), abs(bp), floor)
            expected = abs(cd - bp) / below if below > 0 else math.nan
            tol = SAVED_DIGITS * (abs(cd) + abs(bp)) / below + report.rtol * expected
        elif col == cd_col and row >= G.FIRST_ROW:
            tol = noise + report.rtol * abs(expected)
        else:
            tol = report.rtol * (abs(expected) + scale[_column(a1, row, col)]) + report.atol
        checked += 1
        if found is None or not abs(found - expected) <= tol:
            shown = found if found is not None else cell and cell.value
            report.add(_finding(a1, f"wrong {g.describe(a1)}", expected, shown))
    return checked


def _column(a1: str, row: int, col: int) -> int | str:
    """The column of a parameter row's cell; a cell above the rows is a column of its own."""
    return col if row >= G.FIRST_ROW else a1
