"""Iteration tables of a hand-made workbook: found by their header row, labels read by meaning.

A student's table can start in any row and column, have extra columns (No, Step, Epoch, a
value-only error column per learning rate) and spell each label its own way; position means
nothing, so every header cell is matched against what its text says. A header row is one that
names all eight weights and most of the rest of the 2-2-2 network.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

from openpyxl.utils import get_column_letter

from ..xlsx.read import Cell, Package, cell_number

INPUTS = ("t1", "t2", "i1", "i2")
WEIGHTS = tuple(f"w{k}" for k in range(1, 9))
GRADIENTS = tuple(f"∂E/∂w{k}" for k in range(1, 9))
FORWARD = ("h1", "a_h1", "h2", "a_h2", "o1", "a_o1", "o2", "a_o2", "E1", "E2", "E_total")
COMPUTED = FORWARD + GRADIENTS
# Mazur's worked example adds fixed biases b1 (hidden) and b2 (output): leaves, like the inputs.
BIASES = ("b1", "b2")
QUANTITIES = INPUTS + WEIGHTS + FORWARD + GRADIENTS
MIN_HEADER = 12  # quantities a header row names, at least (all eight weights among them)

# Letters people type for ∂: the partial sign, Greek delta, d, and Cyrillic schwa (Ә ә).
_PARTIAL = "∂δdә"
_GRADIENT = re.compile(
    rf"(?:[{_PARTIAL}]?e(?:_?tot(?:al)?)?)?/?[{_PARTIAL}]w([1-8])"
)  # ∂E/∂w1 ∂E_total/∂W5 dE/dw1 dE_total/dw1 δE_tot/δw1 E∂w1 Edw1 Etotaldw1 dw1
_ACTIVATION = re.compile(r"(?:a|out|act)_?([ho][12])")
_TOTAL = re.compile(r"e_?(?:tot|total|t)")
_PLAIN = re.compile(r"[ti][12]|w[1-8]|[ho][12]|e[12]|b[12]")


def fold(text: str) -> str:
    """Lower case, no spaces, compatibility forms folded (full-width letters, ligatures)."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def label_quantity(text: str) -> str | None:
    """The quantity a header label names (README spelling), or None if it names none."""
    s = fold(text)
    if not s or len(s) > 40:
        return None
    if _PLAIN.fullmatch(s):
        return s.upper() if s[0] == "e" else s
    if m := _ACTIVATION.fullmatch(s):
        return "a_" + m[1]
    if _TOTAL.fullmatch(s):
        return "E_total"
    if m := _GRADIENT.fullmatch(s):
        return f"∂E/∂w{m[1]}"
    return None


def number(cell: Cell | None) -> float | None:
    """A cell's cached value as a finite float, if it holds one."""
    value = cell_number(cell)
    return value if value is not None and math.isfinite(value) else None


def text(cell: Cell | None) -> str | None:
    """A cell's text, if it is a string cell."""
    if cell is None or cell.value is None or cell.type not in ("s", "str", "inlineStr"):
        return None
    return cell.value


@dataclass
class Table:
    """One iteration table: where it is, which column holds which quantity, how many rows."""

    sheet: str
    header_row: int
    cols: dict[str, int]  # quantity → column number
    labels: dict[str, str]  # quantity → label as written
    unknown: list[str] = field(default_factory=list)
    rows: int = 0  # iteration rows with computed cells
    dangling: bool = False  # the row after the last one has weights and nothing else

    @property
    def first_row(self) -> int:
        return self.header_row + 1

    @property
    def last_row(self) -> int:
        return self.header_row + self.rows

    @property
    def first_col(self) -> int:
        return min(self.cols.values())

    def cell_name(self, quantity: str, row: int) -> str:
        return f"{get_column_letter(self.cols[quantity])}{row}"

    @property
    def missing(self) -> list[str]:
        return [q for q in QUANTITIES if q not in self.cols]


def _header(sheet: str, row: int, cells: dict[int, Cell]) -> Table | None:
    cols: dict[str, int] = {}
    labels: dict[str, str] = {}
    unknown: list[str] = []
    for col in sorted(cells):
        written = text(cells[col])
        if written is None or not written.strip():
            continue
        q = label_quantity(written)
        if q is None or q in cols:
            unknown.append(written)
        else:
            cols[q], labels[q] = col, written
    if not all(w in cols for w in WEIGHTS) or len(cols) < MIN_HEADER:
        return None
    return Table(sheet, row, cols, labels, unknown)


def _present(cell: Cell | None) -> bool:
    return cell is not None and (cell.formula is not None or number(cell) is not None)


def _measure(table: Table, grid: dict[tuple[int, int], Cell]) -> None:
    """Count the table's iteration rows: consecutive rows below the header with computed cells."""
    computed = [c for q, c in table.cols.items() if q in COMPUTED]
    weights = [table.cols[w] for w in WEIGHTS]
    row = table.first_row
    while sum(_present(grid.get((row, c))) for c in computed) * 2 > len(computed):
        row += 1
    table.rows = row - table.first_row
    table.dangling = all(_present(grid.get((row, c))) for c in weights) and not any(
        _present(grid.get((row, c))) for c in computed
    )


def find_tables(pkg: Package, title: str) -> tuple[list[Table], dict[tuple[int, int], Cell]]:
    """Every iteration table of a sheet, and the sheet's cells by (row, column)."""
    grid = pkg.cells(title)
    by_row: dict[int, dict[int, Cell]] = {}
    for (r, c), cell in grid.items():
        if cell.type in ("s", "str", "inlineStr"):
            by_row.setdefault(r, {})[c] = cell
    tables = []
    for row in sorted(by_row):
        if len(by_row[row]) >= MIN_HEADER and (table := _header(title, row, by_row[row])):
            _measure(table, grid)
            tables.append(table)
    return tables, grid
