"""The mini-batch parts of a workbook: the schedule on Setup, and INDEX's ranges in formulas.

The schedule table must be the seeded shuffle itself (batches.py rebuilds it from the seed the
Setup sheet shows), so a typed-over sample number is named by its cell; the LR sheets' values
are checked against NumPy's run on that same schedule. A formula's INDEX may read only Setup's
training-set values (column B) or the schedule table: any other range is not a formula bpxl
writes, and the formula check says so instead of guessing what it means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from openpyxl.utils import get_column_letter

from backprop_xlsx.mlp import layout
from backprop_xlsx.report import MAX_FINDINGS, Finding, Report
from backprop_xlsx.verify.rounding import Bounded, exact
from backprop_xlsx.xlsx.formula import Expr, Ref, Unsupported
from backprop_xlsx.xlsx.read import Cell, Package, cell_number

SCHEDULE_KEY = "schedule"  # the Env's entry holding the schedule table (epochs, S)


def range_resolver(
    sheet: layout.SheetLayout,
    setup_key_at_row: Mapping[int, str],
    value_col: int,
    first: bool,
) -> Callable[[Ref, Ref], Expr]:
    """INDEX's range → its table from the Env: Setup values (rows of column B, by key) as
    (rows, 1, n), or the schedule's block as (rows, columns)."""

    def resolve(start: Ref, end: Ref) -> Expr:
        if start.sheet != layout.SETUP_SHEET or end.sheet != layout.SETUP_SHEET:
            raise Unsupported("INDEX reads a range that is not on the Setup sheet")
        if not (first or (start.row_abs and end.row_abs)):
            raise Unsupported("INDEX's range moves down the column (write it absolute)")
        if not (start.col_abs or first) or not (end.col_abs or first):
            raise Unsupported("INDEX's range moves across (write it absolute)")
        (r0, r1), (c0, c1) = sorted((start.row, end.row)), sorted((start.col, end.col))
        where = f"Setup!{get_column_letter(c0)}{r0}:{get_column_letter(c1)}{r1}"
        if c0 == c1 == value_col:
            keys = [setup_key_at_row.get(r) for r in range(r0, r1 + 1)]
            if None in keys:
                raise Unsupported(f"{where} is not a range of Setup value cells")
            return lambda env: _column(env["setup"], keys)  # type: ignore[arg-type]
        if sheet.batching is not None:
            top, left = layout.SETUP_FIRST_ROW, layout.SETUP_SCHEDULE_FIRST_COLUMN
            bottom = top + sheet.batching.epochs - 1
            right = left + sheet.training_samples - 1
            if top <= r0 and r1 <= bottom and left <= c0 and c1 <= right:
                rows, cols = slice(r0 - top, r1 - top + 1), slice(c0 - left, c1 - left + 1)
                return lambda env: _block(env[SCHEDULE_KEY], rows, cols)
        raise Unsupported(f"{where} is neither Setup's training set nor its batch schedule")

    return resolve


def _column(setup: Mapping[str, Any], keys: list[str]) -> Any:
    """Setup's values of `keys`, stacked as a table (rows, 1, n) of n input sets."""
    values = [setup[k] for k in keys]
    if isinstance(values[0], Bounded):
        parts = [np.broadcast_arrays(b.v, b.m, b.e) for b in values]
        n = np.broadcast_shapes(*(np.shape(p[0]) for p in parts))
        v, m, e = (np.stack([np.broadcast_to(p[i], n) for p in parts])[:, None] for i in range(3))
        return Bounded(v, m, e)
    n = np.broadcast_shapes(*(np.shape(v) for v in values))
    return np.stack([np.broadcast_to(np.asarray(v, np.float64), n) for v in values])[:, None]


def _block(table: Any, rows: slice, cols: slice) -> Any:
    if isinstance(table, Bounded):
        return Bounded(table.v[rows, cols], table.m[rows, cols], 0.0)
    return np.asarray(table)[rows, cols]


def schedule_env(sheet: layout.SheetLayout, bounded: bool = True) -> dict[str, Any]:
    """The Env's schedule entry for a formula check: the seeded table; {} for full batch."""
    if sheet.batching is None:
        return {}
    table = sheet.schedule().astype(np.float64)
    return {SCHEDULE_KEY: exact(table) if bounded else table}


def read_schedule_cells(pkg: Package, sheet: layout.SheetLayout) -> dict[tuple[int, int], Cell]:
    """Setup's schedule table (epoch column and the sample numbers), as stored."""
    assert sheet.batching is not None
    right = layout.SETUP_SCHEDULE_FIRST_COLUMN + sheet.training_samples - 1
    bottom = layout.SETUP_FIRST_ROW + sheet.batching.epochs - 1
    return pkg.cells(layout.SETUP_SHEET, right, bottom)


def check_schedule(
    cells: Mapping[tuple[int, int], Cell], sheet: layout.SheetLayout, report: Report
) -> None:
    """Every epoch number and sample number of Setup's table against the seeded shuffle."""
    assert sheet.batching is not None
    table = sheet.schedule()
    epoch_col = layout.SETUP_SCHEDULE_FIRST_COLUMN - 1
    seed, S = sheet.batching.seed, sheet.training_samples
    wrong = 0
    for e in range(table.shape[0]):
        row = layout.SETUP_FIRST_ROW + e
        expected = [e + 1, *table[e].tolist()]
        for p, want in enumerate(expected):
            col = epoch_col + p
            cell = cells.get((row, col))
            found = cell_number(cell)
            if found == want:
                continue
            wrong += 1
            if wrong > MAX_FINDINGS:
                continue
            what = (
                f"epoch number of row {e + 1} of the batch schedule"
                if p == 0
                else f"batch schedule: epoch {e + 1}, position {p} must be the seeded shuffle's "
                f"(np.random.default_rng({seed}).permutation({S}) + 1, epoch by epoch)"
            )
            shown = found if found is not None else (None if cell is None else cell.value)
            report.add(
                Finding(layout.SETUP_SHEET, f"{get_column_letter(col)}{row}", what, want, shown)
            )
    report.findings_total += max(0, wrong - MAX_FINDINGS)
