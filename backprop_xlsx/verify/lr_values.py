"""The value check of the LR sheets: every computed cell against NumPy.

Each LR sheet is recomputed by network.py from the workbook's own Setup cells and the sheet's
own η (the network's shape read from the Setup sheet's text), and every cell a spreadsheet
engine computed must agree to the report's tolerance; sheets of one network share one run.
"""

from __future__ import annotations

import math

import numpy as np

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.report import MAX_FINDINGS, Finding, Report, SheetStats
from backprop_xlsx.verify.lr_sheet import SETUP_VALUE_COL, LrSheet
from backprop_xlsx.xlsx.formula import (
    column_number,
)
from backprop_xlsx.xlsx.read import Cell, cell_number

# ---------------------------------------------------------------------------------------------
# Values against NumPy


def within(
    found: np.ndarray, expected: np.ndarray, report: Report, scale: np.ndarray | float = 0.0
) -> np.ndarray:
    """|found − expected| ≤ rtol·(|expected| + scale) + atol.

    `scale` is the largest |value| of the cell's column: a value that is a sum of cancelling
    terms (a gradient near a minimum) carries rounding of the size of its terms, not of itself,
    and two engines' last bits drift apart over the iterations, so a correct 5e-6 whose column
    started at 1e-2 may differ from NumPy's by 1e-13, past a purely relative tolerance.
    """
    with np.errstate(all="ignore"):
        return np.abs(found - expected) <= report.rtol * (np.abs(expected) + scale) + report.atol


def check_values(
    sheet: LrSheet, expected: np.ndarray, report: Report, until: int | None = None
) -> SheetStats:
    """Every computed cell against NumPy's value of the same iteration and quantity; with
    `until`, the iterations before it (conditioning.py: after it, rounding decides)."""
    stats = SheetStats(sheet.title, sheet.eta(), sheet.rows - 1, compared_until=until)
    for (k, j), text in sorted(sheet.odd_values.items()):
        report.add(
            Finding(sheet.title, sheet.a1(k, j), "value is not a number", expected[k, j], text)
        )
    for k, j in zip(*np.nonzero(sheet.present & ~sheet.has_value), strict=True):
        report.add(Finding(sheet.title, sheet.a1(k, j), "no computed value", expected[k, j]))
    numeric = sheet.has_value & ~np.isnan(sheet.values)
    if until is not None:
        numeric[until:] = False
    found = np.where(numeric, sheet.values, 0.0)
    want = np.where(numeric, expected, 0.0)
    with np.errstate(all="ignore"):
        diff = np.abs(found - want)
        stats.max_abs = float(np.nanmax(diff, initial=0.0))
        relative = numeric & (np.abs(want) >= report.atol / report.rtol)
        rel = np.where(relative, diff / np.where(relative, np.abs(want), 1.0), 0.0)
        stats.max_rel = float(np.nanmax(rel, initial=0.0))
    stats.cells = int(numeric.sum())
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(want), np.abs(want), 0.0)
    scale = finite.max(axis=0, initial=0.0)  # each column's largest |value|
    bad = numeric & ~within(found, want, report, scale)
    rows, cols = np.nonzero(bad)
    for k, j in zip(rows[:MAX_FINDINGS], cols[:MAX_FINDINGS], strict=True):
        report.add(
            Finding(
                sheet.title,
                sheet.a1(k, j),
                f"wrong value of {sheet.layout.keys[j]} in iteration {k}",
                float(expected[k, j]),
                float(sheet.values[k, j]),
            )
        )
    report.findings_total += max(0, len(rows) - MAX_FINDINGS)
    return stats


def numpy_sheets(
    setup: dict[str, float],
    etas: list[float],
    steps: int,
    sheet: layout.SheetLayout,
) -> np.ndarray:
    """NumPy's value of every cell: shape (len(etas), steps + 1, columns), columns as the sheet."""
    with np.errstate(all="ignore"):
        values = sheet.run(setup, np.asarray(etas, dtype=np.float64), steps)
    return np.stack([values[key] for key in sheet.keys], axis=-1).transpose(1, 0, 2)


def expected_runs(setup: dict[str, float] | None, sheets: list[LrSheet]) -> dict[str, np.ndarray]:
    """NumPy's values for each sheet, one vectorised run per distinct number of steps."""
    if setup is None:
        return {}
    by_steps: dict[tuple[int, str], list[LrSheet]] = {}
    for sheet in sheets:  # one run per number of steps and optimizer
        by_steps.setdefault((sheet.rows - 1, sheet.layout.optimizer.name), []).append(sheet)
    out = {}
    for (steps, _), group in by_steps.items():
        values = numpy_sheets(setup, [s.eta() for s in group], steps, group[0].layout)
        out.update((s.title, v) for s, v in zip(group, values, strict=True))
    return out


def read_setup(
    cells: dict[tuple[int, int], Cell],
    report: Report,
    sheet: layout.SheetLayout,
) -> dict[str, float] | None:
    """The starting values from the Setup sheet's own cells; None (and findings) if unusable."""
    values: dict[str, float] = {}
    for entry in sheet.setup:
        row = sheet.setup_row[entry.key]
        cell = cells.get((row, SETUP_VALUE_COL))
        number = cell_number(cell)
        if number is None or not math.isfinite(number):
            where = f"{layout.SETUP_VALUE_COLUMN}{row}"
            found = None if cell is None else cell.value
            problem = f"{entry.name} must be a number"
            report.add(Finding(layout.SETUP_SHEET, where, problem, found=found))
            continue
        values[entry.key] = number
    return values if len(values) == len(sheet.setup) else None


def read_network(cells: dict[tuple[int, int], Cell] | None) -> layout.SheetLayout:
    """The network's layout, from the architecture its Setup sheet shows as text (I:J).

    A workbook of a bpxl that wrote no architecture is the seed's. BpxlError (it cannot be
    checked) when the text is there but does not describe a network bpxl can build."""
    if cells is None:
        return layout.SEED_LAYOUT
    label, value = (column_number(c) for c in layout.SETUP_NETWORK_COLUMNS)
    fields: dict[str, str] = {}
    for k in range(len(layout.NETWORK_FIELDS) + len(layout.BATCH_FIELDS)):
        row = layout.SETUP_FIRST_ROW + k
        name, text = cells.get((row, label)), cells.get((row, value))
        if name is not None and name.value in (*layout.NETWORK_FIELDS, *layout.BATCH_FIELDS):
            fields[name.value] = "" if text is None or text.value is None else text.value
    if not fields:
        return layout.SEED_LAYOUT
    try:
        network = description.structure(fields)
        return layout.SheetLayout(network)
    except BpxlError as exc:
        raise BpxlError(
            f"cannot check the workbook: the network its Setup sheet shows "
            f"({':'.join(layout.SETUP_NETWORK_COLUMNS)}) is not one bpxl builds: {exc}"
        ) from None
