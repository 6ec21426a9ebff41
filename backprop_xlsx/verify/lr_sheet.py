"""Reading one LR sheet of an untrusted workbook into arrays: values, formula ids, cell types.

A sheet of 10,000 steps has millions of cells, so it is streamed a block of rows at a time and
kept as NumPy arrays plus one id per formula cell (`ColumnFormulas`): never the texts of every
formula. What the sheet holds is only read here; judging it is lr_formulas' and lr_values' job.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from backprop_xlsx.mlp import layout
from backprop_xlsx.report import MAX_FINDINGS
from backprop_xlsx.xlsx.formula import (
    Template,
    Token,
    Unsupported,
    cell_key,
    column_number,
    relative_key,
    template,
    tokenize,
)
from backprop_xlsx.xlsx.read import Cell, GridRow, Package, cell_number

# ---------------------------------------------------------------------------------------------
# One LR sheet

ETA_KEY = cell_key(layout.ETA_CELL)
SETUP_VALUE_COL = column_number(layout.SETUP_VALUE_COLUMN)
_TYPE_NAMES = {"e": "error", "s": "text", "str": "text", "inlineStr": "text", "b": "boolean"}


class ColumnFormulas:
    """The formulas of one LR column as they stream past, without keeping their texts.

    The first row's text is kept (its formula reads Setup, not the row above); below it each
    cell gets the id of its relative formula (`relative_key`), found by comparing its text with
    a few rendered templates, in C for a block of rows at a time, and tokenizing only the cells
    that match none. Memory: one int32 per cell, plus each distinct formula once.
    """

    TEMPLATES = 8  # distinct formulas tried as text before tokenizing a cell

    def __init__(self, j: int, title: str, titles: dict[str, str]) -> None:
        self.j, self.col = j, j + 1
        self.title, self.titles = title, titles
        self.first: str | None = None  # the text of the first row's formula
        self.forms: list[tuple[list[Token], int]] = [([], -1)]  # id → (tokens, first k); 0: none
        self.counts = [0]  # id → cells
        self.ids: dict[tuple, int] = {}  # relative key → id
        self.templates: list[tuple[int, Template]] = []
        self.refused: list[tuple[int, str, str]] = []  # (k, text, why) the tokenizer refused
        self.refused_total = 0

    def _id(self, text: str, row: int) -> int:
        """The id of a cell's formula (new ones registered); -1 if the tokenizer refuses it."""
        k = row - layout.FIRST_ROW
        try:
            tokens = tokenize(text, row, self.col, self.title, self.titles)
        except Unsupported as exc:
            self.refused_total += 1
            if len(self.refused) < MAX_FINDINGS:
                self.refused.append((k, text, str(exc)))
            return -1
        key = relative_key(tokens)
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = len(self.counts)
            self.forms.append((tokens, k))
            self.counts.append(0)
            if len(self.templates) < self.TEMPLATES:
                self.templates.append((found, template(tokens, self.col)))
        return found

    def feed(self, rows: list[int], texts: tuple[str | None, ...]) -> np.ndarray:
        """The formula id of each cell of these rows (0: no formula), counted."""
        n = len(rows)
        ids = np.zeros(n, np.int32)
        if not self.templates:
            for i, text in enumerate(texts):
                if text is not None:
                    ids[i] = self._id(text, rows[i])
                    if self.templates:
                        break
        if not self.templates:
            return ids
        main, tpl = self.templates[0]
        if rows[-1] - rows[0] == n - 1:
            expected = tpl.render_rows(rows[0], n)
        else:
            expected = list(map(tpl.render, rows))
        if expected == list(texts):  # the whole block, in one comparison
            ids[:] = main
            self.counts[main] += n
            return ids
        same = np.fromiter(map(operator.eq, texts, expected), bool, n)
        ids[same] = main
        self.counts[main] += int(same.sum())
        for i in np.flatnonzero(~same):
            text = texts[i]
            if text is None or ids[i]:
                if ids[i] > 0:  # the first cell, identified above
                    self.counts[ids[i]] += 1
                continue
            row = rows[i]
            found = next((f for f, other in self.templates[1:] if other.render(row) == text), 0)
            if not found:
                found = self._id(text, row)
            ids[i] = found
            if found > 0:
                self.counts[found] += 1
        return ids


@dataclass
class LrSheet:
    """An LR sheet's cells from FIRST_ROW down: values as arrays, formulas as ids per column."""

    title: str
    top: dict[tuple[int, int], Cell]  # the cells above FIRST_ROW: η, the header
    values: np.ndarray  # (rows, columns) floats; NaN where missing or not a number
    has_formula: np.ndarray  # (rows, columns) bool
    present: np.ndarray  # (rows, columns) bool: the cell exists
    has_value: np.ndarray  # (rows, columns) bool: the cell has a cached value
    odd_values: dict[tuple[int, int], str]  # cached values that are not numbers (errors, text)
    columns: list[ColumnFormulas] | None = None  # None when read without formulas
    formula_ids: np.ndarray | None = None  # (rows, columns) int32: ColumnFormulas ids
    gap: tuple[int, int] | None = None  # (first missing row, next row) where reading stopped
    layout: layout.SheetLayout = field(kw_only=True)  # the network's columns, read from Setup

    @property
    def rows(self) -> int:
        return self.values.shape[0]

    def a1(self, k: int, j: int) -> str:
        """Cell name of data row k (iteration k), column j (0-based)."""
        return f"{self.layout.columns[j].letter}{layout.FIRST_ROW + k}"

    def eta(self) -> float | None:
        return cell_number(self.top.get(ETA_KEY))


BLOCK = 1024  # rows handled at a time: the formula texts of one block are all that is held
GAP = 1024  # missing rows tolerated beyond as many as were read; past that, reading stops


class _Grid:
    """Preallocated arrays for an LR sheet, grown by doubling as rows arrive."""

    def __init__(self, ncol: int) -> None:
        self.capacity = 0
        self.ncol = ncol
        self.values = np.empty((0, ncol))
        self.has_formula = np.zeros((0, ncol), bool)
        self.present = np.zeros((0, ncol), bool)
        self.has_value = np.zeros((0, ncol), bool)
        self.ids = np.zeros((0, ncol), np.int32)
        self.columns: list[ColumnFormulas] | None = None

    def ensure(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        capacity = max(rows, 2 * self.capacity, BLOCK)
        for name, fill in (("values", np.nan), ("has_formula", False), ("present", False),
                           ("has_value", False), ("ids", 0)):  # fmt: skip
            old = getattr(self, name)
            new = np.full((capacity, self.ncol), fill, dtype=old.dtype)
            new[: self.capacity] = old
            setattr(self, name, new)
        self.capacity = capacity


def read_lr_sheet(
    pkg: Package,
    title: str,
    sheet_layout: layout.SheetLayout,
    with_formulas: bool = True,
) -> LrSheet:
    """Read one LR sheet in one streaming pass; cells right of the network's columns are not
    the verifier's concern. Memory follows the cells read, not the row numbers a file claims."""
    ncol = len(sheet_layout.columns)
    rows = pkg.grid(title, ncol)
    try:
        while True:
            top, grid, odd, last, gap = _read_grid(rows, title, pkg.titles, with_formulas, ncol)
            if grid is not None:
                break  # else the reader starts again: drop everything
    finally:
        rows.close()
    n = last + 1
    return LrSheet(
        title,
        top,
        grid.values[:n],
        grid.has_formula[:n],
        grid.present[:n],
        grid.has_value[:n],
        odd,
        grid.columns,
        grid.ids[:n] if with_formulas else None,
        gap,
        layout=sheet_layout,
    )


def _read_grid(rows, title: str, titles: dict[str, str], with_formulas: bool, ncol: int):  # type: ignore[no-untyped-def]
    """Take rows from Package.grid until its end, or until it says "start again" (None: the
    grid returned is None then)."""
    top: dict[tuple[int, int], Cell] = {}
    grid = _Grid(ncol)
    odd: dict[tuple[int, int], str] = {}
    grid.columns = (
        [ColumnFormulas(j, title, titles) for j in range(ncol)] if with_formulas else None
    )
    block: list[GridRow] = []
    last = -1  # the last data row read, as k
    gap = None
    for line in rows:
        if line is None:
            return top, None, odd, last, gap
        if line.row < layout.FIRST_ROW:
            types = line.types or ["n"] * ncol
            top.update(
                ((line.row, j + 1), Cell(line.formulas[j], line.values[j], kind))
                for j, kind in enumerate(types)
                if kind is not None
            )
            continue
        k = line.row - layout.FIRST_ROW
        if k - last - 1 > GAP + last + 1:
            gap = (layout.FIRST_ROW + last + 1, line.row)
            break
        last = k
        block.append(line)
        if len(block) == BLOCK:
            _absorb(block, grid, odd, grid.columns)
            block = []
    if block:
        _absorb(block, grid, odd, grid.columns)
    return top, grid, odd, last, gap


def _absorb(
    block: list[GridRow],
    grid: _Grid,
    odd: dict[tuple[int, int], str],
    columns: list[ColumnFormulas] | None,
) -> None:
    """Put a block of rows into the arrays, and their formulas through the column checks."""
    rows = [line.row for line in block]
    ks = np.array(rows) - layout.FIRST_ROW
    grid.ensure(int(ks[-1]) + 1)
    plain = [i for i, line in enumerate(block) if line.types is None]
    if plain:
        at = ks[plain]
        texts = [v for i in plain for v in block[i].values]
        numbers = _floats(texts).reshape(len(plain), grid.ncol)
        grid.values[at] = numbers
        grid.present[at] = grid.has_value[at] = True
        formulas = [f for i in plain for f in block[i].formulas]
        grid.has_formula[at] = np.fromiter(
            map(operator.is_not, formulas, itertools.repeat(None)), bool, len(formulas)
        ).reshape(len(plain), grid.ncol)
        for i, j in zip(*np.nonzero(np.isnan(numbers)), strict=True):
            odd[(int(at[i]), int(j))] = f"{block[plain[i]].values[j]} (not a number)"
    for i, line in enumerate(block):
        if line.types is None:
            continue
        k = int(ks[i])
        for j, kind in enumerate(line.types):
            if kind is None:
                continue
            grid.present[k, j] = True
            grid.has_formula[k, j] = line.formulas[j] is not None
            value = line.values[j]
            if value is None:
                continue
            grid.has_value[k, j] = True
            if kind == "n":
                number = _float_or_nan(value)
                grid.values[k, j] = number
                if math.isnan(number):
                    odd[(k, j)] = f"{value} (not a number)"
            else:
                odd[(k, j)] = f"{value} ({_TYPE_NAMES.get(kind, kind)})"
    if columns is None:
        return
    texts_by_column = list(zip(*(line.formulas for line in block), strict=True))
    start = 0
    if rows[0] == layout.FIRST_ROW:
        for column, texts in zip(columns, texts_by_column, strict=True):
            column.first = texts[0]
        start = 1
    if start == len(rows):
        return
    at = ks[start:]
    for j, column in enumerate(columns):
        grid.ids[at, j] = column.feed(rows[start:], texts_by_column[j][start:])


def _floats(texts: list[str]) -> np.ndarray:
    """Parse cached numbers; a malformed one (never written by Excel or LibreOffice) becomes
    NaN, which the value check reports. One float() per text, never a fixed-width array of
    texts (a value padded with blanks would make every element as wide as it)."""
    try:
        return np.fromiter(map(float, texts), np.float64, len(texts))
    except (ValueError, TypeError):
        return np.array([_float_or_nan(t) for t in texts], dtype=np.float64)


def _float_or_nan(text: str | None) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return math.nan
