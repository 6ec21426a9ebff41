"""The check of the Error vs LR sheet: its copied E_total values and first-below iterations.

The summary sheet is computed from the LR sheets, so it is checked against the same NumPy runs;
its "first iteration below the threshold" may be any iteration the engine's rounding allows.
"""

from __future__ import annotations

import math

import numpy as np
from openpyxl.utils import get_column_letter

from backprop_xlsx.mlp import layout, summary_layout
from backprop_xlsx.report import Finding, Report
from backprop_xlsx.verify.lr_values import within
from backprop_xlsx.xlsx.formula import (
    cell_key,
    column_number,
)
from backprop_xlsx.xlsx.read import Cell, cell_number

# ---------------------------------------------------------------------------------------------
# The Error vs LR sheet


def _first_below(e_total: np.ndarray, threshold: float, report: Report) -> tuple[int, int]:
    """The range of iterations that may be 'first below threshold' given rounding noise:
    (first surely below, first possibly below); len(e_total) stands for never."""
    tol = report.rtol * abs(threshold) + report.atol
    n = len(e_total)
    surely = np.nonzero(e_total < threshold - tol)[0]
    maybe = np.nonzero(e_total < threshold + tol)[0]
    return (int(surely[0]) if len(surely) else n, int(maybe[0]) if len(maybe) else n)


def check_summary(
    cells: dict[tuple[int, int], Cell],
    lr: dict[str, tuple[float | None, np.ndarray | None]],
    report: Report,
    summary_title: str = layout.SUMMARY_SHEET,
) -> None:
    """Per learning rate: η, final E_total and first iteration below the sheet's threshold;
    then the table of E_total per iteration. `lr` maps sheet title → (η, NumPy's E_total).
    `summary_title`: Error vs LR, or Optimizers (the same tables over every training sheet)."""
    titles = list(lr)
    steps = max((len(e) - 1 for _, e in lr.values() if e is not None), default=0)
    where = summary_layout.SummaryLayout(len(titles), steps)
    columns = {k: column_number(v) for k, v in summary_layout.SUMMARY_COLUMNS.items()}
    threshold_cell = cells.get(cell_key(summary_layout.THRESHOLD_CELL))
    threshold = cell_number(threshold_cell)
    if threshold is None:
        found = threshold_cell and threshold_cell.value
        report.add(Finding(summary_title, summary_layout.THRESHOLD_CELL, "threshold", None, found))
    checked = 0
    order: list[str] = []
    for j, fallback in enumerate(titles):
        row = where.lr_row(j)
        named = cells.get((row, columns["sheet"]))
        title = named.value if named is not None and named.value in lr else fallback
        if named is None or named.value != title:
            cell = f"{summary_layout.SUMMARY_COLUMNS['sheet']}{row}"
            report.add(Finding(summary_title, cell, "sheet name", title, named and named.value))
        order.append(title)
        eta, e_total = lr[title]
        if eta is not None:
            checked += _compare(
                cells, [row], columns["eta"], [eta], f"η of {title}", report, summary_title
            )
        if e_total is None:
            continue
        what = f"final E_total of {title}"
        checked += _compare(
            cells, [row], columns["final"], e_total[-1:], what, report, summary_title
        )
        if threshold is not None:
            col = columns["first_below"]
            _check_first_below(cells, row, col, title, e_total, threshold, report, summary_title)
            checked += 1
    rows = [where.iteration_row(k) for k in range(steps + 1)]
    for j, title in enumerate(order):
        e_total = lr[title][1]
        if e_total is not None:
            col = column_number(where.lr_column(j))
            what = f"E_total of {title}"
            checked += _compare(
                cells, rows[: len(e_total)], col, e_total, what, report, summary_title
            )
    checked += _compare(
        cells, rows, 1, np.arange(steps + 1.0), "iteration number", report, summary_title
    )
    report.summary_cells = checked


def _compare(
    cells: dict[tuple[int, int], Cell],
    rows: list[int],
    col: int,
    expected: np.ndarray | list[float],
    what: str,
    report: Report,
    summary_title: str = layout.SUMMARY_SHEET,
) -> int:
    """Compare a column of Error vs LR with NumPy; returns how many cells were compared."""
    found = [cells.get((row, col)) for row in rows]
    got = np.array([math.nan if (x := cell_number(c)) is None else x for c in found])
    want = np.asarray(expected, dtype=np.float64)
    for i in np.flatnonzero(~within(got, want, report) & ~np.isnan(want)):  # NaN: not compared
        cell = f"{get_column_letter(col)}{rows[i]}"
        problem = f"wrong {what}" if len(rows) == 1 else f"wrong {what}, iteration {i}"
        value = float(got[i]) if found[i] is not None and not np.isnan(got[i]) else None
        value = value if value is not None else found[i] and found[i].value
        report.add(Finding(summary_title, cell, problem, float(want[i]), value))
    return len(rows)


def _check_first_below(
    cells: dict[tuple[int, int], Cell],
    row: int,
    col: int,
    title: str,
    e_total: np.ndarray,
    threshold: float,
    report: Report,
    summary_title: str = layout.SUMMARY_SHEET,
) -> None:
    surely, maybe = _first_below(e_total, threshold, report)
    unknown = np.flatnonzero(np.isnan(e_total))
    if unknown.size and maybe >= unknown[0]:
        return  # it lies where the values are not compared (conditioning.py)
    never = len(e_total)
    cell = cells.get((row, col))
    found: float | str | None = cell_number(cell)
    if found is None and cell is not None and cell.value == summary_layout.NEVER:
        found = never
    ok = isinstance(found, float | int) and found == int(found) and maybe <= found <= surely
    if not ok:
        want = summary_layout.NEVER if surely == never and maybe == never else surely
        report.add(
            Finding(
                summary_title,
                f"{get_column_letter(col)}{row}",
                f"first iteration with E_total < threshold on {title}",
                want,
                cell and cell.value,
            )
        )
