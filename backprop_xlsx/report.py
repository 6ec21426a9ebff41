"""The report verify and the trained net's check write on: each wrong cell, as text and JSON.

It sits beside the rooms that check (verify/ and cnn/check.py write on it; handmade/ takes its
changed-input seed), importing only xlsx/, so none of them imports another back. It is read by
people, so it names every problem by sheet and cell, keeps at most MAX_FINDINGS of them (a broken
file cannot make it unbounded), and echoes text from the untrusted file only through
`printable`: no raw line breaks or bidirectional controls reach a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from backprop_xlsx.xlsx.formula import sheet_ref

# |found − expected| ≤ RTOL·|expected| + ATOL. Measured with LibreOffice 7.4 against NumPy: at
# most 8.5e-15 relative for 100 steps (3.4e-13 on a small E1); at 10,000 steps o1, o2 and the
# gradients converge to ~1e-16 by cancellation and LibreOffice is off by up to 6.7e-15 absolute,
# while E_total reaches ~1e-30 or exactly 0. Rounding noise is absolute, of the size of the
# operands (~1), so ATOL is 15× the worst measured noise and RTOL covers error propagation.
RTOL = 1e-10
ATOL = 1e-13


INPUT_SETS = 64  # random changed-input sets for the formula check
INPUT_SEED = 20240611  # their generator's seed: a report is the same on every run
ITERATIONS = 4  # rows evaluated per set: the first row and three gradient steps
MAX_FINDINGS = 1000  # findings kept in the report; the rest are only counted
SHOWN = 20  # findings printed by Report.text()

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
        where = f"{sheet_ref(self.sheet)}!{self.cell}" if self.cell else self.sheet
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
    # the first iteration not compared (conditioning.py: rounding grows past the tolerance)
    compared_until: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass
class CnnStats:
    """What was compared on the trained net's sheets, for the report's line about them."""

    values: int = 0  # computed cells compared with NumPy
    formulas: int = 0  # computed cells whose formula was checked
    max_abs: float = 0.0
    max_rel: float = 0.0  # over |expected| ≥ the CNN check's atol/rtol
    picked: int | None = None
    predicted: int | None = None
    label: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    summary_title: str = ""  # Error vs LR, or Optimizers: set by the check that reads it
    gradcheck_cells: int = 0  # cells of the Gradient check sheet compared with NumPy
    formula_cells: int = 0  # cells checked for the same relative formula down their column
    findings: list[Finding] = field(default_factory=list)
    findings_total: int = 0
    cnn: CnnStats | None = None  # when the workbook has the trained net's sheets

    @property
    def ok(self) -> bool:
        return self.findings_total == 0

    @property
    def cells_checked(self) -> int:
        return sum(s.cells for s in self.sheets) + self.summary_cells + self.gradcheck_cells

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
            "gradient_check_cells_checked": self.gradcheck_cells,
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
            lines.append(f"{self.summary_title:<14}{'':>18}{self.summary_cells:>11,}")
        for s in self.sheets:
            if s.compared_until is not None:
                lines.append(_not_compared(printable(s.title, 40), s.compared_until, s.steps))
        if self.gradcheck_cells:
            lines.append(f"{'Gradient check':<14}{'':>18}{self.gradcheck_cells:>11,}")
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


def _not_compared(title: str, first: int, steps: int) -> str:
    """The line on a sheet whose last iterations were not compared (see conditioning.py)."""
    return (
        f"{title}: iterations {first:,} to {steps:,} not compared with NumPy: from there one "
        "rounding grows past the tolerance (g/√v of a gradient at rounding level), so correct "
        "engines differ; their formulas are checked on changed inputs"
    )
