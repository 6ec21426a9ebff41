"""The learning rate η of a hand-made table: the cell its weight-update formulas read.

A label near the table (`η =`, `lr`, `Learning Rate`, a Symbol-font `h` that shows as η) is only
a hint, and so is a sheet title like `LR=0.1`: the evidence is the one cell outside the table
that the updates `w(r) = w(r−1) − η·∂E/∂w(r−1)` multiply by. A table of typed numbers has no
such formula; then, and only then, the label decides.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from openpyxl.utils import get_column_letter

from ..xlsx.formula import Unsupported, tokenize
from ..xlsx.read import Cell
from .tables import WEIGHTS, Table, fold, number, text

_LABEL = re.compile(r"(?:learningrate.*|lr|l\.r\.?|eta|η|ͷ|n|h|theta|θ)")


@dataclass
class Eta:
    value: float | None
    cell: tuple[int, int] | None  # (row, column)
    label: str  # as written, "" if none

    @property
    def name(self) -> str:
        if self.cell is None:
            return ""
        row, col = self.cell
        return f"{get_column_letter(col)}{row}"


def is_eta_label(written: str) -> bool:
    return bool(_LABEL.fullmatch(fold(written).rstrip("=:")))


def update_refs(
    table: Table, grid: dict[tuple[int, int], Cell], row: int, titles: dict[str, str]
) -> Counter[tuple[int, int]]:
    """Cells outside the table that the weight-update formulas of `row` read, counted."""
    inside = set(table.cols.values())
    found: Counter[tuple[int, int]] = Counter()
    for w in WEIGHTS:
        col = table.cols[w]
        cell = grid.get((row, col))
        if cell is None or cell.formula is None:
            continue
        try:
            tokens = tokenize(cell.formula.lstrip("="), row, col, table.sheet, titles)
        except Unsupported:
            continue
        for kind, ref in tokens:
            if kind != "ref" or ref.sheet is not None:
                continue
            r = ref.row if ref.row_abs else row + ref.row
            c = ref.col if ref.col_abs else col + ref.col
            if not (c in inside and table.first_row <= r <= table.last_row):
                found[(r, c)] += 1
    return found


def _label_left(grid: dict[tuple[int, int], Cell], row: int, col: int) -> str:
    for dc in (1, 2, 3):
        written = text(grid.get((row, col - dc)))
        if written is not None and written.strip():
            return written
    return ""


def _by_label(table: Table, grid: dict[tuple[int, int], Cell]) -> Eta:
    """A labelled number 1–3 rows above the header or in its row, the label 1–3 columns left."""
    for row in [*range(table.header_row - 1, table.header_row - 4, -1), table.header_row]:
        for col in range(1, table.first_col + 40):
            written = text(grid.get((row, col)))
            if written is None or not is_eta_label(written):
                continue
            for dc in (1, 2, 3):
                value = number(grid.get((row, col + dc)))
                if value is not None:
                    return Eta(value, (row, col + dc), written)
    return Eta(None, None, "")


def find_eta(table: Table, grid: dict[tuple[int, int], Cell], titles: dict[str, str]) -> Eta:
    """η from the first weight update that reads a cell outside the table, else from a label."""
    for row in range(table.first_row + 1, table.last_row + 1):
        refs = update_refs(table, grid, row, titles)
        if refs:
            cell = refs.most_common(1)[0][0]
            return Eta(number(grid.get(cell)), cell, _label_left(grid, *cell))
    return _by_label(table, grid)
