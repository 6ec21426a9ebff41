"""`bpxl verify`: prove a workbook's numbers and formulas right, independently of how it was made.

Two independent checks, because each one alone can be fooled:

* Values. Every LR sheet is recomputed in NumPy (`network.train`) from the workbook's own Setup
  cells and the sheet's own η, and every computed cell is compared with the value a spreadsheet
  engine gave it: the values cached in the file (saved by Excel or LibreOffice), or a headless
  LibreOffice recalculation of a copy.
* Formulas. A formula can be wrong yet give the right number on the sheet's own inputs (E1
  written with t2 instead of t1 is invisible while t1 = t2). So every column must hold one
  relative formula all the way down (a typed-in constant or a one-off edit shows up), and each
  column's formula, as found in the file, is compiled to NumPy and run on random *changed*
  inputs (t1 ≠ t2, random weights and η) against `network.forward_backward`.

The formula language (tokens, rendering, compiling to NumPy) is `formula.py`; reading the package
is `xlsxread.py`; this module holds the checks, the report and `verify_workbook`.

The workbook is untrusted: whatever it holds ends as a finding (the workbook is wrong: `bpxl
verify` exits 1) or a BpxlError (it cannot be checked: exit 2), never as an exception of another
kind; 0 means every check passed. Text from the file (formulas, sheet names, values) is echoed
through `printable`: no raw line breaks or bidirectional controls reach a terminal.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import operator
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree
from openpyxl.utils import get_column_letter

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.verify.progress import QUIET, Progress
from backprop_xlsx.verify.rounding import BOUNDED, close, exact, exact_inputs, tolerance
from backprop_xlsx.xlsx.fileio import temp_folder
from backprop_xlsx.xlsx.formula import (
    Template,
    Token,
    Unsupported,
    cell_key,
    column_number,
    compile_formula,
    relative_key,
    render,
    template,
    tokenize,
)
from backprop_xlsx.xlsx.read import Cell, GridRow, Package, cell_number

# |found − expected| ≤ RTOL·|expected| + ATOL. Measured with LibreOffice 7.4 against NumPy: at
# most 8.5e-15 relative for 100 steps (3.4e-13 on a small E1); at 10,000 steps o1, o2 and the
# gradients converge to ~1e-16 by cancellation and LibreOffice is off by up to 6.7e-15 absolute,
# while E_total reaches ~1e-30 or exactly 0. Rounding noise is absolute, of the size of the
# operands (~1), so ATOL is 15× the worst measured noise and RTOL covers error propagation.
RTOL = 1e-10
ATOL = 1e-13

# verify's steps, as shares of its time (2-16-16-1, 20 samples: about these on 2 cores)
SHARE_READ, SHARE_FORMULAS, SHARE_RECALC, SHARE_VALUES = 0.35, 0.25, 0.3, 0.1

INPUT_SETS = 64  # random changed-input sets for the formula check
ITERATIONS = 4  # rows evaluated per set: the first row and three gradient steps
MAX_FINDINGS = 1000  # findings kept in the report; the rest are only counted
SHOWN = 20  # findings printed by Report.text()

_ETA = cell_key(layout.ETA_CELL)
_SETUP_VALUE_COL = column_number(layout.SETUP_VALUE_COLUMN)


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class Finding:
    """One thing wrong, named by its cell so the user can go and look."""

    sheet: str
    cell: str
    problem: str
    expected: Any = None
    found: Any = None
    found_formula: str | None = None
    expected_formula: str | None = None

    @property
    def where(self) -> str:
        where = f"{layout.sheet_ref(self.sheet)}!{self.cell}" if self.cell else self.sheet
        return printable(where, None)

    def text(self) -> str:
        parts = [f"{self.where}: {printable(self.problem)}"]
        if self.found_formula is not None:
            parts.append(f"found ={printable(self.found_formula)}")
        if self.expected_formula is not None:
            parts.append(f"expected ={printable(self.expected_formula)}")
        if self.expected is not None:
            parts.append(f"expected {_show(self.expected)}, found {_show(self.found)}")
        elif self.found is not None:
            parts.append(f"found {_show(self.found)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sheet": printable(self.sheet, None),
            "cell": self.cell,
            "where": self.where,
            "problem": printable(self.problem, None),
            "expected": _jsonable(self.expected),
            "found": _jsonable(self.found),
            "found_formula": _jsonable(self.found_formula),
            "expected_formula": _jsonable(self.expected_formula),
        }


SHOWN_CHARS = 200  # of a formula or a text value echoed in the text report


def printable(text: str, limit: int | None = SHOWN_CHARS) -> str:
    """Text from a workbook, safe to print on one line: line breaks, other controls and
    bidirectional overrides (whatever str.isprintable refuses) as backslash escapes; clipped
    to `limit` characters (None: not clipped, for JSON)."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _ESCAPES.get(ch, _escape(ch)) for ch in text)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.17g}"
    if isinstance(value, str):
        return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…")
    return "nothing" if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return printable(value, None)
    return value


@dataclass
class SheetStats:
    """What was compared on one sheet, and how close the engine came to NumPy."""

    title: str
    eta: float | None
    steps: int
    cells: int = 0
    max_abs: float = 0.0
    # over cells with |expected| ≥ atol/rtol, where the relative term governs the tolerance;
    # below that, values near 0 (o1, o2 and gradients converge to ~1e-16) are judged by max_abs
    max_rel: float = 0.0
    formulas: int = 0  # formulas compiled and run on changed inputs

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


_ENGINE_NAMES = {
    "cached": "cached in the file by Excel/LibreOffice",
    "libreoffice": "from a LibreOffice recalculation of a copy",
}


@dataclass
class Report:
    path: str
    engine: str = ""
    rtol: float = RTOL
    atol: float = ATOL
    sheets: list[SheetStats] = field(default_factory=list)
    summary_cells: int = 0
    formula_cells: int = 0  # cells checked for the same relative formula down their column
    findings: list[Finding] = field(default_factory=list)
    findings_total: int = 0
    cnn: Any = None  # verify_cnn.CnnStats when the workbook has the trained net's sheets

    @property
    def ok(self) -> bool:
        return self.findings_total == 0

    @property
    def cells_checked(self) -> int:
        return sum(s.cells for s in self.sheets) + self.summary_cells

    @property
    def formulas_checked(self) -> int:
        return sum(s.formulas for s in self.sheets)

    def add(self, finding: Finding) -> None:
        self.findings_total += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "engine": self.engine,
            "tolerance": {"rtol": self.rtol, "atol": self.atol},
            "sheets": [s.to_dict() for s in self.sheets],
            "summary_cells_checked": self.summary_cells,
            "cells_checked": self.cells_checked,
            "formula_cells_checked": self.formula_cells,
            "formulas_checked_on_changed_inputs": self.formulas_checked,
            "changed_input_sets": INPUT_SETS,
            "changed_input_iterations": ITERATIONS,
            "cnn": None if self.cnn is None else self.cnn.to_dict(),
            "findings_total": self.findings_total,
            "findings": [f.to_dict() for f in self.findings],
        }

    def text(self) -> str:
        source = _ENGINE_NAMES.get(self.engine, self.engine)
        lines = [f"{printable(self.path, None)}: {'OK' if self.ok else 'FAILED'} (values {source})"]
        lines.append(
            f"tolerance |found − expected| ≤ {self.rtol:g}·|expected| + {self.atol:g}; "
            f"max rel over |expected| ≥ {self.atol / self.rtol:g}"
        )
        lines.append(
            f"{'sheet':<14}{'η':>10}{'steps':>8}{'cells':>11}{'max abs':>10}{'max rel':>10}"
        )
        for s in self.sheets:
            eta = "?" if s.eta is None else f"{s.eta:g}"
            lines.append(
                f"{printable(s.title, 40):<14}{eta:>10}{s.steps:>8}{s.cells:>11,}"
                f"{s.max_abs:>10.2g}{s.max_rel:>10.2g}"
            )
        if self.summary_cells:
            lines.append(f"{layout.SUMMARY_SHEET:<14}{'':>18}{self.summary_cells:>11,}")
        if self.cnn is not None:
            c = self.cnn
            lines.append(
                f"CNN sheets: {c.values:,} cells against NumPy (image {c.picked}, predicted "
                f"{c.predicted}, label {c.label}), max abs {c.max_abs:.2g}, max rel "
                f"{c.max_rel:.2g}; {c.formulas:,} formulas checked"
            )
        lines.append(f"values: {self.cells_checked:,} cells checked against NumPy")
        lines.append(
            f"formulas: {self.formula_cells:,} cells checked for one relative formula per column; "
            f"{self.formulas_checked} formulas run on {INPUT_SETS} changed input sets × "
            f"{ITERATIONS} iterations against network.py"
        )
        if not self.ok:
            lines.append(f"{self.findings_total:,} problem(s):")
            lines += [f"  {f.text()}" for f in self.findings[:SHOWN]]
            if self.findings_total > SHOWN:
                lines.append(f"  … and {self.findings_total - SHOWN:,} more")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# One LR sheet


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
    layout: layout.SheetLayout = layout.SEED_LAYOUT  # the network's columns, read from Setup

    @property
    def rows(self) -> int:
        return self.values.shape[0]

    def a1(self, k: int, j: int) -> str:
        """Cell name of data row k (iteration k), column j (0-based)."""
        return f"{self.layout.columns[j].letter}{layout.FIRST_ROW + k}"

    def eta(self) -> float | None:
        return cell_number(self.top.get(_ETA))


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
    with_formulas: bool = True,
    sheet_layout: layout.SheetLayout = layout.SEED_LAYOUT,
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
        sheet_layout,
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


_TYPE_NAMES = {"e": "error", "s": "text", "str": "text", "inlineStr": "text", "b": "boolean"}


def check_structure(sheet: LrSheet, report: Report) -> bool:
    """η numeric and > 0, the header row exact, every data cell present. False: skip values."""
    ok = True
    eta_cell = sheet.top.get(_ETA)
    eta = sheet.eta()
    if eta is None or not math.isfinite(eta) or eta <= 0:
        found = None if eta_cell is None else eta_cell.value
        report.add(Finding(sheet.title, layout.ETA_CELL, "η must be a number > 0", found=found))
        ok = False
    for j, column in enumerate(sheet.layout.columns):
        cell = sheet.top.get((layout.HEADER_ROW, j + 1))
        text = None if cell is None else cell.value
        if text != column.header:
            where = f"{column.letter}{layout.HEADER_ROW}"
            report.add(Finding(sheet.title, where, "wrong header", column.header, text))
    if sheet.rows == 0:
        report.add(Finding(sheet.title, f"A{layout.FIRST_ROW}", "no iterations (empty sheet)"))
        return False
    for k, j in zip(*np.nonzero(~sheet.present), strict=True):
        report.add(Finding(sheet.title, sheet.a1(k, j), "empty cell: rows must be contiguous"))
        ok = False
    if sheet.gap is not None:
        first, after = sheet.gap
        report.add(
            Finding(
                sheet.title,
                f"A{first}",
                f"rows {first:,} to {after - 1:,} are missing: rows must be contiguous "
                f"(row {after:,} and below not read)",
            )
        )
        ok = False
    return ok


def check_formulas(
    sheet: LrSheet,
    report: Report,
    rng: np.random.Generator,
    titles: dict[str, str],
    progress: Progress = QUIET,
    share: float = 0.0,
) -> int:
    """Each column one relative formula down; the formulas right on changed inputs.

    Returns how many formulas were compiled and run on changed inputs; `progress` advances by
    `share` over the run.
    """
    assert sheet.columns is not None, "read without formulas"
    first: dict[str, tuple[list[Token], int]] = {}
    rest: dict[str, tuple[list[Token], int]] = {}
    for j, column in enumerate(sheet.layout.columns):
        text = sheet.columns[j].first if sheet.rows else None
        if text is None:
            if sheet.rows:
                _constant(sheet, report, 0, j)
        else:
            tokens = _tokens(sheet, report, 0, j, text, titles)
            if tokens is not None:
                first[column.key] = (tokens, 0)
        found = _column_formula(sheet, report, j)
        if found is not None:
            rest[column.key] = found
    compiled = _changed_inputs(sheet, report, first, rest, rng, progress, share)
    report.formula_cells += int(sheet.has_formula.sum())
    return compiled


def _constant(sheet: LrSheet, report: Report, k: int, j: int) -> None:
    if not sheet.present[k, j]:
        return  # already reported as an empty cell
    value = sheet.values[k, j]
    report.add(
        Finding(
            sheet.title,
            sheet.a1(k, j),
            "typed-in value instead of a formula",
            found=None if math.isnan(value) else float(value),
            found_formula=None,
            expected_formula=sheet.layout.columns[j].formula(layout.FIRST_ROW + k)[1:],
        )
    )


def _column_formula(sheet: LrSheet, report: Report, j: int) -> tuple[list[Token], int] | None:
    """The one relative formula of column j below the first row, and the row it is first in.

    Cells that differ from the column's most common formula are reported; a rewrite that
    changes nothing (quotes, case, spaces) is the same formula, not a finding.
    """
    column = sheet.columns[j]  # type: ignore[index]
    ids = sheet.formula_ids
    if sheet.rows < 2 or ids is None:
        return None
    for k in np.flatnonzero(~sheet.has_formula[1:, j]) + 1:
        _constant(sheet, report, int(k), j)
    for k, text, why in column.refused:
        report.add(
            Finding(
                sheet.title, sheet.a1(k, j), f"formula not supported: {why}", found_formula=text
            )
        )
    report.findings_total += column.refused_total - len(column.refused)
    if len(column.counts) == 1:
        return None
    main = 1 + int(np.argmax(column.counts[1:]))
    main_tokens = column.forms[main][0]
    col = j + 1
    differ = np.flatnonzero((ids[:, j] > 0) & (ids[:, j] != main))
    for k in differ[:MAX_FINDINGS]:
        row = layout.FIRST_ROW + int(k)
        report.add(
            Finding(
                sheet.title,
                sheet.a1(int(k), j),
                "formula differs from the rest of its column",
                found_formula=render(column.forms[ids[k, j]][0], row, col),
                expected_formula=render(main_tokens, row, col),
            )
        )
    report.findings_total += max(0, len(differ) - MAX_FINDINGS)
    return main_tokens, int(np.flatnonzero(ids[:, j] == main)[0])


def _tokens(
    sheet: LrSheet, report: Report, k: int, j: int, text: str, titles: dict[str, str]
) -> list[Token] | None:
    """The tokens of a cell's formula; None, and a finding, if the tokenizer refuses it."""
    try:
        return tokenize(text, layout.FIRST_ROW + k, j + 1, sheet.title, titles)
    except Unsupported as exc:
        report.add(
            Finding(
                sheet.title, sheet.a1(k, j), f"formula not supported: {exc}", found_formula=text
            )
        )
        return None


def _random_inputs(
    rng: np.random.Generator, sheet: layout.SheetLayout
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Changed inputs that separate every pair of quantities: each Setup value drawn on its own
    (so t1 ≠ t2, i1 ≠ i2, all w distinct), and η.

    Scaled so that values stay bounded in any network the layout describes: each weight
    within ±2/√fan-in (a neuron's net input stays of the size of one input, however wide the
    layer), and each set's η halved until its ITERATIONS steps neither overflow nor grow any
    quantity past GROWTH times its largest first value (the gradient is a sum over samples, so
    the η that keeps a step stable shrinks with samples and width)."""
    n = INPUT_SETS
    fan_in = {
        w: len(sheet.names[layer])
        for layer, rows in enumerate(sheet.weight_number)
        for row in rows
        for w in row
    }
    bounds = {"i": (-1.0, 1.0), "t": (0.05, 0.95), "w": (-2.0, 2.0), "b": (-1.0, 1.0)}
    start = {}
    for e in sheet.setup:
        low, high = bounds[e.key[0]]
        scale = 1 / math.sqrt(fan_in[e.key]) if e.key in fan_in else 1.0
        start[e.key] = rng.uniform(low, high, n) * scale
    eta = rng.uniform(0.05, 3.0, n)
    for _ in range(HALVINGS):
        wild = ~_stays_bounded(_reference_run(start, eta, sheet))
        if not wild.any():
            break
        eta = np.where(wild, eta / 2, eta)
    return start, eta


GROWTH = 8.0  # how far a changed-input run may grow its largest value in ITERATIONS - 1 steps
HALVINGS = 60  # of η, at most: 2⁻⁶⁰ is below any step that could still overflow


def _stays_bounded(values: dict[str, np.ndarray]) -> np.ndarray:
    """Per input set: every value finite and within GROWTH × the largest of the first row."""
    stacked = np.abs(np.stack(list(values.values())))  # (keys, iterations, sets)
    with np.errstate(all="ignore"):
        first = stacked[:, 0].max(axis=0)
        largest = np.nanmax(np.where(np.isfinite(stacked), stacked, np.inf), axis=(0, 1))
    return np.isfinite(largest) & (largest <= GROWTH * np.maximum(first, 1.0))


def _reference_run(
    start: dict[str, np.ndarray], eta: np.ndarray, sheet: layout.SheetLayout
) -> dict[str, np.ndarray]:
    """Every quantity of the first ITERATIONS iterations by network.py: key → (iterations, sets)."""
    with np.errstate(all="ignore"):
        return sheet.run(start, eta, ITERATIONS - 1)


def _reference_rows(
    start: dict[str, np.ndarray], eta: np.ndarray, sheet: layout.SheetLayout
) -> list[dict[str, np.ndarray]]:
    """Every quantity of the first ITERATIONS iterations, computed by network.py."""
    values = _reference_run(start, eta, sheet)
    return [{key: v[it] for key, v in values.items()} for it in range(ITERATIONS)]


def _changed_inputs(
    sheet: LrSheet,
    report: Report,
    first: dict[str, tuple[list[Token], int]],
    rest: dict[str, tuple[list[Token], int]],
    rng: np.random.Generator,
    progress: Progress = QUIET,
    share: float = 0.0,
) -> int:
    """Run every column's formula on random inputs, fed the right values of its own inputs.

    Each formula gets network.py's values for the cells it reads (this row, the row above,
    Setup, η), so a wrong formula is blamed alone instead of every column downstream of it.
    """
    start, eta = _random_inputs(rng, sheet.layout)
    truth = _reference_rows(start, eta, sheet.layout)
    n, later = len(eta), ITERATIONS - 1

    def stacked(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {key: np.concatenate([row[key] for row in rows]) for key in rows[0]}

    # the first row alone; the later rows side by side (iteration-major), one run per formula
    envs = {
        True: {"cur": exact_inputs(truth[0]), "prev": {}, "setup": exact_inputs(start),
               "eta": exact(eta)},
        False: {"cur": exact_inputs(stacked(truth[1:])), "prev": exact_inputs(stacked(truth[:-1])),
                "setup": exact_inputs({k: np.tile(v, later) for k, v in start.items()}),
                "eta": exact(np.tile(eta, later))},
    }  # fmt: skip
    wants = {True: truth[0], False: stacked(truth[1:])}
    compiled = 0
    each = share / max(len(first) + len(rest), 1)
    for first_row, formulas in ((True, first), (False, rest)):
        deps: dict[str, set[str]] = {}
        for key, (tokens, k) in formulas.items():
            progress.advance(each)
            j = sheet.layout.keys.index(key)
            row = layout.FIRST_ROW + k
            finding = Finding(
                sheet.title,
                sheet.a1(k, j),
                "",
                found_formula=render(tokens, row, j + 1),
                expected_formula=sheet.layout.columns[j].formula(row)[1:],
            )
            try:
                expr, deps[key] = compile_formula(
                    tokens, row, j + 1, first_row, sheet.layout, BOUNDED
                )
            except Unsupported as exc:
                finding.problem = f"formula not supported or wrong: {exc}"
                report.add(finding)
                continue
            compiled += 1
            with np.errstate(all="ignore"):
                got = expr(envs[first_row])
            want = wants[first_row][key]
            bad = np.flatnonzero(~np.broadcast_to(close(got, want), want.shape))
            if len(bad):
                i = bad[0]  # the first wrong set of the first wrong iteration
                allowed = np.broadcast_to(tolerance(got), want.shape)[i]
                bound = f"±{allowed:.2g}" if allowed >= 0 else "no bound"
                it = 0 if first_row else 1 + i // n
                finding.problem = (
                    f"formula gives a wrong {key} on changed inputs "
                    f"(iteration {it}, input set {i % n}; rounding allows {bound})"
                )
                found = np.broadcast_to(got.v, want.shape)[i]
                finding.expected, finding.found = float(want[i]), float(found)
                report.add(finding)
        cycle = _cycle(deps)
        if cycle:
            where = sheet.a1(0 if first_row else 1, sheet.layout.keys.index(cycle[0]))
            report.add(Finding(sheet.title, where, "circular reference: " + " → ".join(cycle)))
    return compiled


def _cycle(deps: dict[str, set[str]]) -> list[str] | None:
    """A circular chain of same-row references, if any (depth-first search)."""
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> list[str] | None:
        state[key] = 1
        for dep in sorted(deps.get(key, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [key, dep]
            if dep not in state:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[key] = 2
        return None

    for key in deps:
        if key not in state:
            found = visit(key, [key])
            if found:
                return found
    return None


def _with_iteration_column(
    sheet: layout.SheetLayout, pkg: Package, titles: list[str]
) -> layout.SheetLayout:
    """The layout with column A the iteration number, unless the first LR sheet's header
    starts with the data instead: a workbook of bpxl before 0.3, correct in its own layout."""
    header = pkg.cells(titles[0], 1, layout.HEADER_ROW).get((layout.HEADER_ROW, 1))
    if header is None or header.value == layout.ITERATION:
        return sheet
    if header.value != sheet.columns[1].header:
        return sheet  # neither: check_structure names the wrong header
    return layout.SheetLayout(sheet.network, classic=sheet.classic, iteration_column=False)


# ---------------------------------------------------------------------------------------------
# Values against NumPy


def _within(found: np.ndarray, expected: np.ndarray, report: Report) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.abs(found - expected) <= report.rtol * np.abs(expected) + report.atol


def check_values(sheet: LrSheet, expected: np.ndarray, report: Report) -> SheetStats:
    """Every computed cell against NumPy's value of the same iteration and quantity."""
    stats = SheetStats(sheet.title, sheet.eta(), sheet.rows - 1)
    for (k, j), text in sorted(sheet.odd_values.items()):
        report.add(
            Finding(sheet.title, sheet.a1(k, j), "value is not a number", expected[k, j], text)
        )
    for k, j in zip(*np.nonzero(sheet.present & ~sheet.has_value), strict=True):
        report.add(Finding(sheet.title, sheet.a1(k, j), "no computed value", expected[k, j]))
    numeric = sheet.has_value & ~np.isnan(sheet.values)
    found = np.where(numeric, sheet.values, 0.0)
    want = np.where(numeric, expected, 0.0)
    with np.errstate(all="ignore"):
        diff = np.abs(found - want)
        stats.max_abs = float(np.nanmax(diff, initial=0.0))
        relative = numeric & (np.abs(want) >= report.atol / report.rtol)
        rel = np.where(relative, diff / np.where(relative, np.abs(want), 1.0), 0.0)
        stats.max_rel = float(np.nanmax(rel, initial=0.0))
    stats.cells = int(numeric.sum())
    bad = numeric & ~_within(found, want, report)
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
    sheet: layout.SheetLayout = layout.SEED_LAYOUT,
) -> np.ndarray:
    """NumPy's value of every cell: shape (len(etas), steps + 1, columns), columns as the sheet."""
    with np.errstate(all="ignore"):
        values = sheet.run(setup, np.asarray(etas, dtype=np.float64), steps)
    return np.stack([values[key] for key in sheet.keys], axis=-1).transpose(1, 0, 2)


def _expected(setup: dict[str, float] | None, sheets: list[LrSheet]) -> dict[str, np.ndarray]:
    """NumPy's values for each sheet, one vectorised run per distinct number of steps."""
    if setup is None:
        return {}
    by_steps: dict[int, list[LrSheet]] = {}
    for sheet in sheets:
        by_steps.setdefault(sheet.rows - 1, []).append(sheet)
    out = {}
    for steps, group in by_steps.items():
        values = numpy_sheets(setup, [s.eta() for s in group], steps, group[0].layout)
        out.update((s.title, v) for s, v in zip(group, values, strict=True))
    return out


def read_setup(
    cells: dict[tuple[int, int], Cell],
    report: Report,
    sheet: layout.SheetLayout = layout.SEED_LAYOUT,
) -> dict[str, float] | None:
    """The starting values from the Setup sheet's own cells; None (and findings) if unusable."""
    values: dict[str, float] = {}
    for entry in sheet.setup:
        row = sheet.setup_row[entry.key]
        cell = cells.get((row, _SETUP_VALUE_COL))
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
    for k in range(len(layout.NETWORK_FIELDS)):
        row = layout.SETUP_FIRST_ROW + k
        name, text = cells.get((row, label)), cells.get((row, value))
        if name is not None and name.value in layout.NETWORK_FIELDS:
            fields[name.value] = "" if text is None or text.value is None else text.value
    if not fields:
        return layout.SEED_LAYOUT
    try:
        network = description.structure(fields)
        return layout.SheetLayout(network, classic=network.classic)
    except BpxlError as exc:
        raise BpxlError(
            f"cannot check the workbook: the network its Setup sheet shows "
            f"({':'.join(layout.SETUP_NETWORK_COLUMNS)}) is not one bpxl builds: {exc}"
        ) from None


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
) -> None:
    """Per learning rate: η, final E_total and first iteration below the sheet's threshold;
    then the table of E_total per iteration. `lr` maps sheet title → (η, NumPy's E_total)."""
    titles = list(lr)
    steps = max((len(e) - 1 for _, e in lr.values() if e is not None), default=0)
    where = layout.SummaryLayout(len(titles), steps)
    columns = {k: column_number(v) for k, v in layout.SUMMARY_COLUMNS.items()}
    threshold_cell = cells.get(cell_key(layout.THRESHOLD_CELL))
    threshold = cell_number(threshold_cell)
    if threshold is None:
        found = threshold_cell and threshold_cell.value
        report.add(Finding(layout.SUMMARY_SHEET, layout.THRESHOLD_CELL, "threshold", None, found))
    checked = 0
    order: list[str] = []
    for j, fallback in enumerate(titles):
        row = where.lr_row(j)
        named = cells.get((row, columns["sheet"]))
        title = named.value if named is not None and named.value in lr else fallback
        if named is None or named.value != title:
            cell = f"{layout.SUMMARY_COLUMNS['sheet']}{row}"
            report.add(
                Finding(layout.SUMMARY_SHEET, cell, "sheet name", title, named and named.value)
            )
        order.append(title)
        eta, e_total = lr[title]
        if eta is not None:
            checked += _compare(cells, [row], columns["eta"], [eta], f"η of {title}", report)
        if e_total is None:
            continue
        what = f"final E_total of {title}"
        checked += _compare(cells, [row], columns["final"], e_total[-1:], what, report)
        if threshold is not None:
            col = columns["first_below"]
            _check_first_below(cells, row, col, title, e_total, threshold, report)
            checked += 1
    rows = [where.iteration_row(k) for k in range(steps + 1)]
    for j, title in enumerate(order):
        e_total = lr[title][1]
        if e_total is not None:
            col = column_number(where.lr_column(j))
            what = f"E_total of {title}"
            checked += _compare(cells, rows[: len(e_total)], col, e_total, what, report)
    checked += _compare(cells, rows, 1, np.arange(steps + 1.0), "iteration number", report)
    report.summary_cells = checked


def _compare(
    cells: dict[tuple[int, int], Cell],
    rows: list[int],
    col: int,
    expected: np.ndarray | list[float],
    what: str,
    report: Report,
) -> int:
    """Compare a column of Error vs LR with NumPy; returns how many cells were compared."""
    found = [cells.get((row, col)) for row in rows]
    got = np.array([math.nan if (x := cell_number(c)) is None else x for c in found])
    want = np.asarray(expected, dtype=np.float64)
    for i in np.flatnonzero(~_within(got, want, report)):
        cell = f"{get_column_letter(col)}{rows[i]}"
        problem = f"wrong {what}" if len(rows) == 1 else f"wrong {what}, iteration {i}"
        value = float(got[i]) if found[i] is not None and not np.isnan(got[i]) else None
        value = value if value is not None else found[i] and found[i].value
        report.add(Finding(layout.SUMMARY_SHEET, cell, problem, float(want[i]), value))
    return len(rows)


def _check_first_below(
    cells: dict[tuple[int, int], Cell],
    row: int,
    col: int,
    title: str,
    e_total: np.ndarray,
    threshold: float,
    report: Report,
) -> None:
    surely, maybe = _first_below(e_total, threshold, report)
    never = len(e_total)
    cell = cells.get((row, col))
    found: float | str | None = cell_number(cell)
    if found is None and cell is not None and cell.value == layout.NEVER:
        found = never
    ok = isinstance(found, float | int) and found == int(found) and maybe <= found <= surely
    if not ok:
        want = layout.NEVER if surely == never and maybe == never else surely
        report.add(
            Finding(
                layout.SUMMARY_SHEET,
                f"{get_column_letter(col)}{row}",
                f"first iteration with E_total < threshold on {title}",
                want,
                cell and cell.value,
            )
        )


# ---------------------------------------------------------------------------------------------
# The whole workbook


ENGINES = ("auto", "cached", "libreoffice")
# What a damaged package raises while its sheets are streamed (zipfile: RuntimeError for an
# encrypted part, NotImplementedError for a compression method it lacks).
_CORRUPT = (
    etree.XMLSyntaxError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
    RuntimeError,
)  # fmt: skip


def verify_workbook(
    path: Path | str,
    engine: str = "auto",
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    progress: Progress = QUIET,
) -> Report:
    """Check every LR sheet's values and formulas, and the Error vs LR sheet, against NumPy.

    Raises BpxlError when the file cannot be checked at all (missing, not an xlsx, no LR
    sheets, no values and no LibreOffice); everything wrong inside the workbook is a finding.
    `progress` is told each step and its share of the whole.
    """
    if engine not in ENGINES:
        raise BpxlError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    path = Path(path)
    report = Report(str(path), rtol=rtol, atol=atol)
    pkg = Package(path)
    try:
        titles = [
            t for t in pkg.parts if layout.is_bpxl_sheet(t) and t.casefold().startswith("lr ")
        ]
        if not titles:
            from backprop_xlsx.cnn import layout as cnn_layout

            if not any(t in pkg.parts for t in cnn_layout.SHEETS):
                raise BpxlError(
                    f"{path} has no LR sheets (named like 'LR 0.5') and no trained-net sheets: "
                    "not a bpxl workbook?"
                )
            return _verify_cnn_only(pkg, report, engine)
        rng = np.random.default_rng(20240611)
        # the architecture, from the workbook itself
        sheet_layout = _with_iteration_column(read_network(_network_cells(pkg)), pkg, titles)
        sheets: list[LrSheet] = []
        healthy: dict[str, bool] = {}
        compiled: dict[str, int] = {}
        progress.step(f"reading {len(titles)} LR sheet(s)")
        for title, sheet in zip(titles, _read_lr_sheets(pkg, titles, sheet_layout), strict=True):
            progress.advance(SHARE_READ / len(titles))
            progress.step(f"{title}: formulas on changed inputs")
            healthy[title] = check_structure(sheet, report)
            compiled[title] = check_formulas(
                sheet, report, rng, pkg.titles, progress, SHARE_FORMULAS / len(titles)
            )
            sheet.columns = sheet.formula_ids = None  # not needed any more
            sheets.append(sheet)
        setup_cells = _setup_cells(pkg, sheet_layout)
        summary_cells = _summary_cells(pkg, sheets)
        report.engine = _choose_engine(path, engine, sheets, report)
        progress.step("LibreOffice recalculation" if report.engine == "libreoffice" else "values")
        if report.engine == "libreoffice":
            setup_cells, summary_cells = _recalculated(
                path, sheets, setup_cells, summary_cells, pkg, report
            )
        else:
            from backprop_xlsx.cnn.check import check_cnn_sheets

            report.cnn = check_cnn_sheets(pkg, report, recalc=engine != "cached")
    except RecursionError:
        raise  # a bug, not a damaged file
    except _CORRUPT as exc:
        raise BpxlError(
            f"cannot read {path}: a damaged xlsx ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        pkg.close()
    progress.advance(SHARE_RECALC)
    progress.step("values against NumPy")

    setup = None
    if setup_cells is None:
        report.add(Finding(layout.SETUP_SHEET, "", "the Setup sheet is missing"))
    else:
        setup = read_setup(setup_cells, report, sheet_layout)
    expected = _expected(setup, [s for s in sheets if healthy[s.title]])
    lr: dict[str, tuple[float | None, np.ndarray | None]] = {}
    for sheet in sheets:
        want = expected.get(sheet.title)
        if want is None:
            stats = SheetStats(sheet.title, sheet.eta(), max(sheet.rows - 1, 0))
        else:
            stats = check_values(sheet, want, report)
        stats.formulas = compiled[sheet.title]
        report.sheets.append(stats)
        progress.advance(SHARE_VALUES / len(sheets))
        e_total = None if want is None else want[:, sheet_layout.keys.index("E_total")]
        lr[sheet.title] = (sheet.eta(), e_total)
    if summary_cells is None:
        report.add(
            Finding(layout.SUMMARY_SHEET, "", f"the {layout.SUMMARY_SHEET} sheet is missing")
        )
    else:
        check_summary(summary_cells, lr, report)
    return report


def application(path: Path) -> str | None:
    """docProps/app.xml's Application: who saved the file (bpxl, LibreOffice, Excel, …)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.NameToInfo.get("docProps/app.xml")
            if info is None or info.file_size > 1 << 20:
                return None
            text = zf.read(info).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile, zlib.error):
        return None
    found = re.search(r"<(?:\w+:)?Application>([^<]*)</", text)
    return found.group(1).strip() if found else None


def _setup_cells(
    pkg: Package, sheet: layout.SheetLayout = layout.SEED_LAYOUT
) -> dict[tuple[int, int], Cell] | None:
    """The Setup sheet's cells that the checks read (its value column), or None if missing."""
    if layout.SETUP_SHEET not in pkg.parts:
        return None
    width, last = _SETUP_VALUE_COL, max(sheet.setup_row.values())
    return pkg.cells(layout.SETUP_SHEET, width, last)


def _network_cells(pkg: Package) -> dict[tuple[int, int], Cell] | None:
    """The Setup sheet's text describing the network (I:J), or None if there is no Setup."""
    if layout.SETUP_SHEET not in pkg.parts:
        return None
    width = column_number(layout.SETUP_NETWORK_COLUMNS[-1])
    last = layout.SETUP_FIRST_ROW + len(layout.NETWORK_FIELDS) - 1
    return pkg.cells(layout.SETUP_SHEET, width, last)


def _summary_cells(pkg: Package, sheets: list[LrSheet]) -> dict[tuple[int, int], Cell] | None:
    """The Error vs LR cells the checks read: as many rows and columns as the LR sheets need."""
    if layout.SUMMARY_SHEET not in pkg.parts:
        return None
    steps = max((s.rows - 1 for s in sheets), default=0)
    where = layout.SummaryLayout(len(sheets), steps)
    width = max(
        [column_number(c) for c in layout.SUMMARY_COLUMNS.values()]
        + [column_number(where.lr_column(j)) for j in range(len(sheets))]
    )
    last = max(
        where.iteration_row(steps), where.lr_row(len(sheets)), cell_key(layout.THRESHOLD_CELL)[0]
    )
    cells: dict[tuple[int, int], Cell] = {}
    rows = pkg.grid(layout.SUMMARY_SHEET, width)  # its table's rows are plain: read as text
    try:
        for line in rows:
            if line is None:  # the reader starts again
                cells = {}
                continue
            if line.row > last:
                break
            types = line.types or ["n"] * width
            cells.update(
                ((line.row, j + 1), Cell(line.formulas[j], line.values[j], kind))
                for j, kind in enumerate(types)
                if kind is not None
            )
    finally:
        rows.close()
    return cells


def _choose_engine(path: Path, engine: str, sheets: list[LrSheet], report: Report) -> str:
    """cached when the formula cells carry values (saved by Excel or LibreOffice), else a
    LibreOffice recalculation of a copy; a clear error when neither can give values."""
    with_value = sum(int((s.has_value & s.has_formula).sum()) for s in sheets)
    formulas = sum(int(s.has_formula.sum()) for s in sheets)
    if application(path) == layout.APPLICATION:
        # bpxl wrote NumPy's values itself: no evidence of what a spreadsheet computes
        with_value = 0
        if engine == "cached":
            raise BpxlError(
                f"{path} holds the values bpxl computed with NumPy when it wrote the file, not a "
                "spreadsheet's: use --engine libreoffice (or auto), or open and save it in Excel "
                "or LibreOffice first, or build it with `bpxl build --recalc`"
            )
    if engine == "cached" and formulas and with_value == 0:
        raise BpxlError(
            f"{path} has no cached values (it was never calculated and saved): use --engine "
            "libreoffice, or open and save it in Excel or LibreOffice, or build it with "
            "`bpxl build --recalc`"
        )
    if engine == "cached" or (engine == "auto" and with_value == formulas):
        return "cached"
    from backprop_xlsx.xlsx.libreoffice import find_soffice

    if find_soffice() is None:
        raise BpxlError(
            f"{path} has no computed values to check and LibreOffice is not installed: install "
            "LibreOffice, or open and save the workbook in Excel or LibreOffice, or build it with "
            "`bpxl build --recalc`"
        )
    return "libreoffice"


def _read_lr_sheets(
    pkg: Package, titles: list[str], sheet_layout: layout.SheetLayout
) -> Iterator[LrSheet]:
    """The LR sheets in order, read two (or as many as there are cores) at a time.

    Reading is most of verify's time (measured on 6 × 10,000 steps, a quiet 2-core machine:
    4.3 of 5.8 s, regular expressions and float parsing over 310,000 cells a sheet) and the
    sheets are independent, so worker processes read them (fork, where there is one: nothing
    to import again); the checks stay in this process, in order, so findings and the random
    changed inputs are the same as when read one by one."""
    cores = os.cpu_count() or 1
    fork = "fork" in multiprocessing.get_all_start_methods()
    if len(titles) < 2 or cores < 2 or not fork:
        for title in titles:
            yield read_lr_sheet(pkg, title, sheet_layout=sheet_layout)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(cores, len(titles)), mp_context=context) as pool:
        jobs = [pool.submit(_read_in_worker, str(pkg.path), t, sheet_layout) for t in titles]
        for job in jobs:
            sheet, error = job.result()
            if error is not None:
                raise BpxlError(error)
            yield sheet


def _read_in_worker(
    path: str, title: str, sheet_layout: layout.SheetLayout
) -> tuple[LrSheet | None, str | None]:
    """One LR sheet, read in a worker process; a problem comes back as its one line."""
    try:
        pkg = Package(Path(path))
        try:
            return read_lr_sheet(pkg, title, sheet_layout=sheet_layout), None
        finally:
            pkg.close()
    except BpxlError as exc:
        return None, str(exc)
    except _CORRUPT as exc:
        return None, f"cannot read {path}: a damaged xlsx ({type(exc).__name__}: {exc})"


def _verify_cnn_only(pkg: Package, report: Report, engine: str) -> Report:
    """A workbook with the trained net's sheets and no LR sheets: check those alone."""
    from backprop_xlsx.cnn.check import check_cnn_sheets

    report.engine = "cached" if engine == "cached" else "libreoffice"
    report.cnn = check_cnn_sheets(pkg, report, recalc=engine != "cached")
    return report


def _recalculated(
    path: Path,
    sheets: list[LrSheet],
    setup_cells: dict[tuple[int, int], Cell] | None,
    summary_cells: dict[tuple[int, int], Cell] | None,
    original: Package,
    report: Report,
) -> tuple[dict | None, dict | None]:
    """Let LibreOffice compute a copy, and take every value from it. Constants typed into the
    original (Setup, η) keep their full precision: LibreOffice rounds what it saves to 15
    digits, but computed with the original's doubles. The trained net's sheets, when there,
    are checked against the same copy."""
    from backprop_xlsx.cnn.check import check_cnn_sheets
    from backprop_xlsx.xlsx.libreoffice import recalculate

    with temp_folder("verify") as tmp:
        copy = recalculate(path, Path(tmp) / "recalculated.xlsx")
        pkg = Package(copy)
        try:
            for sheet in sheets:
                fresh = read_lr_sheet(pkg, sheet.title, False, sheet.layout)
                if fresh.values.shape == sheet.values.shape:
                    computed = sheet.has_formula
                    sheet.values = np.where(computed, fresh.values, sheet.values)
                    sheet.has_value = np.where(computed, fresh.has_value, sheet.has_value)
                    sheet.odd_values = {
                        **{kj: v for kj, v in sheet.odd_values.items() if not computed[kj]},
                        **{kj: v for kj, v in fresh.odd_values.items() if computed[kj]},
                    }
            if setup_cells is not None and layout.SETUP_SHEET in pkg.parts:
                setup_cells = _merge(setup_cells, _setup_cells(pkg, sheets[0].layout) or {})
            if summary_cells is not None and layout.SUMMARY_SHEET in pkg.parts:
                summary_cells = _merge(summary_cells, _summary_cells(pkg, sheets) or {})
            report.cnn = check_cnn_sheets(original, report, computed=pkg)
        finally:
            pkg.close()
    return setup_cells, summary_cells


def _merge(
    original: dict[tuple[int, int], Cell], computed: dict[tuple[int, int], Cell]
) -> dict[tuple[int, int], Cell]:
    """Formula cells take LibreOffice's value; typed-in cells keep the original's."""
    merged = dict(original)
    for key, cell in original.items():
        if cell.formula is not None and key in computed:
            merged[key] = cell._replace(value=computed[key].value, type=computed[key].type)
    return merged
