"""A training sheet as the tests read it: its numbers as one array to compare with NumPy's, and
verify's formula check of it alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backprop_xlsx.mlp import layout
from backprop_xlsx.report import INPUT_SEED, Report
from backprop_xlsx.verify.lr_formulas import check_formulas
from backprop_xlsx.verify.lr_sheet import read_lr_sheet
from backprop_xlsx.xlsx.read import Package, cell_number


def sheet_values(path: Path, sheet: layout.SheetLayout, eta: float, steps: int) -> np.ndarray:
    """(steps + 1, columns) of the LR sheet of `eta`; NaN where a cell holds no number."""
    pkg = Package(path)
    try:
        cells = pkg.cells(layout.lr_sheet_title(eta))
    finally:
        pkg.close()
    out = np.full((steps + 1, len(sheet.columns)), np.nan)
    for (row, col), cell in cells.items():
        k = row - layout.FIRST_ROW
        if 0 <= k <= steps and col <= len(sheet.columns):
            number = cell_number(cell)
            out[k, col - 1] = np.nan if number is None else number
    return out


def formula_findings(path: Path, title: str, sheet_layout: layout.SheetLayout) -> Report:
    """verify's formula check alone (no spreadsheet engine needed) on one training sheet, with
    verify's own changed inputs."""
    pkg = Package(path)
    try:
        sheet = read_lr_sheet(pkg, title, sheet_layout)
        report = Report(str(path))
        check_formulas(sheet, report, np.random.default_rng(INPUT_SEED), pkg.titles)
    finally:
        pkg.close()
    return report
