"""Grade one hand-made workbook: every formula by its meaning, every value from its own row.

Two checks, so that one wrong formula is one finding, not everything downstream of it:

* meaning: each distinct formula of a column is compiled (formula.py, NumPy closures) and run on
  64 random, self-consistent rows (spec.random_rows); it must give what the column's label
  means. This is what catches E1 reading t2 in a file where t1 = t2.
* value: each cached value must be what the textbook formula gives from the cells it depends on
  in the file (this row, or the row above for a weight update), within a tolerance fitted to
  the digits the file stores (Google Sheets caches 10 significant digits; pasted tables often 6
  decimals). This catches typed numbers, and references that move as a column is filled down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import absolute_coordinate

from ..report import INPUT_SEED
from ..xlsx.formula import Ref, Unsupported, compile_tokens, relative_key, tokenize
from ..xlsx.read import Cell, Package
from . import spec
from .eta import Eta, find_eta
from .tables import BIASES, COMPUTED, INPUTS, WEIGHTS, Table, find_tables, number

SAMPLES = 64  # random input sets each formula is run on
RTOL = 1e-6  # relative tolerance of a value against its own row's recomputation
MEANING_RTOL = 1e-8  # formulas that mean the same agree to rounding on random rows
_KIND_ORDER = ("formula", "typed", "value", "empty")
_EMPTY = Cell(None, None, "n")


@dataclass
class Finding:
    sheet: str
    quantity: str
    kind: str  # formula | typed | value | empty | missing_column | typed_values |
    #            repeated_rows | unfinished_table
    first_cell: str
    message: str
    rows_affected: int = 1
    found_formula: str = ""
    should_read: str = ""
    expected: float | None = None
    found: float | None = None

    def to_dict(self) -> dict:
        """For --json: a value that is not a finite number is null (JSON has no NaN)."""
        return {
            k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in self.__dict__.items()
        }


@dataclass
class TableResult:
    table: Table
    eta: Eta
    findings: list[Finding] = field(default_factory=list)
    unchecked: str = ""  # why the table could not be checked, if it could not

    def to_dict(self) -> dict:
        t = self.table
        return {
            "sheet": t.sheet,
            "header_row": t.header_row,
            "first_col": get_column_letter(t.first_col),
            "first_row": t.first_row,
            "rows": t.rows,
            "eta": self.eta.value,
            "eta_cell": self.eta.name,
            "eta_label": self.eta.label,
            "labels": dict(t.labels),
            "unknown_labels": list(t.unknown),
            "unchecked": self.unchecked,
        }


# A cell reference whose row is relative, outside names, strings and sheet names: the formula
# text with these rows written as offsets is the same in every row of a filled-down column.
_RELATIVE_ROW = re.compile(r"""(?<![\w$.'"])(\$?[A-Za-z]{1,3})(\d+)(?![\w(!'".])""")


def _relative_text(formula: str, row: int) -> str:
    """A cache key for tokenize: equal for two rows of a column holding the same relative
    formula, so each distinct formula is tokenized once (a 283-row column: once, not 283×)."""
    return _RELATIVE_ROW.sub(lambda m: f"{m[1]}{{{int(m[2]) - row}}}", formula)


def _digits(cell: Cell | None) -> tuple[int, int]:
    """(significant digits, decimals) of a cached number as the file stores it."""
    if cell is None or cell.value is None or cell.type not in ("n", None):
        return 0, 0
    mantissa, _, exponent = cell.value.lower().partition("e")
    significant = len(mantissa.lstrip("-").replace(".", "").lstrip("0"))
    try:
        return significant, len(mantissa.partition(".")[2]) - int(exponent or 0)
    except ValueError:
        return 0, 0


def _half_ulp(cells: list[Cell | None]) -> float:
    """Half a unit in the last digit a column stores: 0 for full doubles (15+ digits), else
    from the most decimals any of its cells shows (a column pasted at 6 decimals: 5e-7)."""
    digits = [_digits(c) for c in cells]
    if not digits or max(d[0] for d in digits) >= 15:
        return 0.0
    return 0.5 * 10.0 ** -max(d[1] for d in digits)


class _Grader:
    def __init__(
        self, table: Table, grid: dict[tuple[int, int], Cell], eta: Eta, titles: dict[str, str]
    ) -> None:
        self.t, self.grid, self.eta, self.titles = table, grid, eta, titles
        self.rows = range(table.first_row, table.last_row + 1)
        self.at_col = {c: q for q, c in table.cols.items()}
        self.biases = {b for b in BIASES if b in table.cols}
        self.bad: dict[str, dict[int, str]] = {}  # quantity → row → kind
        self.notes: dict[tuple[str, int], str] = {}
        self.vals = {q: self._column(q, number) for q in table.cols}
        self.has_formula = {
            q: np.array([(grid.get((r, c)) or _EMPTY).formula is not None for r in self.rows])
            for q, c in table.cols.items()
        }
        self.ulp = max(
            (_half_ulp([grid.get((r, c)) for r in self.rows]) for q, c in table.cols.items()
             if q not in INPUTS),
            default=0.0,
        )  # fmt: skip
        rng = np.random.default_rng(INPUT_SEED)
        self.world = spec.random_rows(SAMPLES, rng, self.biases)

    def _column(self, q: str, fn: Callable[[Cell | None], float | None]) -> np.ndarray:
        col = self.t.cols[q]
        out = [fn(self.grid.get((r, col))) for r in self.rows]
        return np.array([np.nan if v is None else v for v in out], dtype=float)

    def checked(self, q: str) -> range:
        return self.rows[1:] if q in WEIGHTS else self.rows

    def mark(self, q: str, row: int, kind: str) -> None:
        rows = self.bad.setdefault(q, {})
        if row not in rows or _KIND_ORDER.index(kind) < _KIND_ORDER.index(rows[row]):
            rows[row] = kind

    # -- meaning ------------------------------------------------------------------------------

    def _where(self, ref: Ref, row: int, col: int) -> tuple:
        if ref.sheet is not None:
            return ("other", ref.prefix)
        r = ref.row if ref.row_abs else row + ref.row
        c = ref.col if ref.col_abs else col + ref.col
        if self.eta.cell == (r, c):
            return ("eta",)
        q = self.at_col.get(c)
        if q is not None and self.t.first_row <= r <= self.t.last_row + 1:
            if r == row:
                return ("cur", q)
            if r == row - 1 and row > self.t.first_row:
                return ("prev", q)
            if q in INPUTS or q in self.biases:  # data that stays from row to row
                return ("cur", q)
        return ("const", r, c)

    def _compile(self, tokens: list, places: list[tuple]) -> Callable:
        it = iter(places)

        def resolve(ref: Ref) -> Callable:
            place = next(it)
            if place[0] == "other":
                raise Unsupported(f"reads another sheet ({place[1]})")
            if place[0] == "eta":
                return lambda env: env["eta"]
            if place[0] in ("cur", "prev"):
                scope, q = place
                return lambda env: env[scope][q]
            cell = self.grid.get((place[1], place[2]))
            value = number(cell)
            if value is None and cell is not None and cell.value is not None:
                raise Unsupported(
                    f"reads {get_column_letter(place[2])}{place[1]}, which is not a number"
                )
            constant = np.float64(value or 0.0)
            return lambda env: constant

        return compile_tokens(tokens, resolve)

    def check_formulas(self, q: str) -> None:
        col = self.t.cols[q]
        groups: dict[tuple, list[int]] = {}
        parsed: dict[tuple, list] = {}
        seen: dict[str, tuple[list, tuple]] = {}  # relative text → (tokens, relative key)
        for row in self.checked(q):
            cell = self.grid.get((row, col))
            if cell is None or cell.formula is None:
                continue
            text = cell.formula.lstrip("=")
            rel = _relative_text(text, row)
            if rel not in seen:
                try:
                    tokens = tokenize(text, row, col, self.t.sheet, self.titles)
                except Unsupported as exc:
                    self.mark(q, row, "formula")
                    self.notes[(q, row)] = f"cannot be read: {exc}"
                    continue
                seen[rel] = (tokens, relative_key(tokens))
            tokens, rkey = seen[rel]
            places = [self._where(v, row, col) for k, v in tokens if k == "ref"]
            key = (rkey, tuple(places))
            groups.setdefault(key, []).append(row)
            parsed.setdefault(key, [tokens, places])
        cur, prev, eta = self.world
        env = {"cur": cur, "prev": prev, "eta": eta}
        want = spec.value(q, cur, prev, eta)
        for key, rows in groups.items():
            tokens, places = parsed[key]
            try:
                with np.errstate(all="ignore"):
                    got = np.broadcast_to(np.asarray(self._compile(tokens, places)(env), float),
                                          want.shape)  # fmt: skip
            except Unsupported as exc:
                for row in rows:
                    self.mark(q, row, "formula")
                    self.notes[(q, row)] = f"cannot be checked: {exc}"
                continue
            if not np.allclose(got, want, rtol=MEANING_RTOL, atol=1e-12, equal_nan=True):
                for row in rows:
                    self.mark(q, row, "formula")
                self.notes[(q, rows[0])] = self._diagnose(q, places, float(got[0]), want[0])

    def _diagnose(self, q: str, places: list[tuple], got: float, want: float) -> str:
        read = {p[1] + ("'" if p[0] == "prev" else "") for p in places if p[0] in ("cur", "prev")}
        belongs = spec.reads(q)
        extra, lacking = sorted(read - belongs), sorted(belongs - read)
        if q in WEIGHTS and ("eta",) not in places:
            lacking.append(f"η ({self.eta.name or 'its cell'})")
        outside = [f"{get_column_letter(p[2])}{p[1]}" for p in places if p[0] == "const"]
        parts = []
        if extra or lacking:
            parts.append(
                f"reads {', '.join(map(self._named, extra)) or 'nothing'} where "
                f"{', '.join(map(self._named, lacking)) or 'nothing more'} belongs"
            )
        if outside:
            parts.append(f"reads {', '.join(outside)} outside this and the previous row")
        if not parts:
            parts.append("reads the right cells but combines them wrongly")
        return f"{'; '.join(parts)} (on changed inputs it gives {got:.6g}, not {want:.6g})"

    def _named(self, key: str) -> str:
        q = key.rstrip("'")
        if q not in self.t.cols:
            return key
        letters = get_column_letter(self.t.cols[q])
        return f"{q} ({letters}{' of the row above' if key.endswith(chr(39)) else ''})"

    def should_read(self, q: str, row: int) -> str:
        eta = absolute_coordinate(self.eta.name) if self.eta.cell else "η"
        return spec.should_read(q, row, self.t.cell_name, eta, self.biases)

    # -- values -------------------------------------------------------------------------------

    def expected(self, q: str) -> np.ndarray:
        nan = np.full(len(self.rows), np.nan)
        cur = {k: self.vals.get(k, nan) for k in (*INPUTS, *WEIGHTS, *COMPUTED, *self.biases)}
        prev = {k: np.concatenate([[np.nan], v[:-1]]) for k, v in cur.items()}
        eta = np.nan if self.eta.value is None else self.eta.value
        with np.errstate(all="ignore"):
            return np.asarray(spec.value(q, cur, prev, eta), dtype=float)

    def tolerance(self, exp: np.ndarray) -> np.ndarray:
        """Rounding of the stored digits, a few units of it through η·∂E/∂w, plus 1e-6
        relative for what recomputing from rounded cells changes."""
        ulp = self.ulp
        scale = max(1.0, abs(self.eta.value or 1.0))
        return RTOL * np.abs(exp) + 1e-12 + 4 * scale * ulp

    def check_values(self, q: str) -> np.ndarray:
        exp = self.expected(q)
        found = self.vals[q]
        wrong = np.isfinite(exp) & ~(np.abs(found - exp) <= self.tolerance(exp))
        wrong &= ~(np.isnan(found) & self.has_formula[q])  # saved without values: meaning only
        if q in WEIGHTS:
            wrong[0] = False
        return wrong


def _first_computed(table: Table) -> str:
    return next(q for q in COMPUTED if q in table.cols)


def grade_table(
    table: Table, grid: dict[tuple[int, int], Cell], titles: dict[str, str]
) -> TableResult:
    eta = find_eta(table, grid, titles)
    result = TableResult(table, eta)
    if table.rows == 0:
        result.unchecked = (
            f"sheet {table.sheet!r}, header row {table.header_row}: no iteration rows "
            "(no computed column has a formula or a value)"
        )
        return result
    g = _Grader(table, grid, eta, titles)
    out = result.findings
    for q in [*WEIGHTS, *COMPUTED]:
        if q not in table.cols:
            where = f"{get_column_letter(max(table.cols.values()) + 1)}{table.header_row}"
            out.append(
                Finding(table.sheet, q, "missing_column", where, f"no column is labelled {q}")
            )
    checked = [q for q in (*WEIGHTS, *COMPUTED) if q in table.cols]
    any_formula = any(
        (grid.get((r, table.cols[q])) or Cell(None, None, "n")).formula
        for q in checked if q not in WEIGHTS for r in g.rows
    )  # fmt: skip
    if not any_formula:
        q = _first_computed(table)
        n_cols = sum(q not in WEIGHTS for q in checked)
        out.append(Finding(
            table.sheet, q, "typed_values", table.cell_name(q, table.first_row),
            f"every computed cell of the table ({n_cols} columns x {table.rows} rows) is a "
            "typed number: values where formulas belong", table.rows,
            found=float(g.vals[q][0]),
        ))  # fmt: skip
    wrong_values = {}
    for q in checked:
        col = table.cols[q]
        if any_formula:
            g.check_formulas(q)
            for row in g.checked(q):
                cell = grid.get((row, col))
                if cell is None or cell.formula is None:
                    g.mark(q, row, "typed" if number(cell) is not None else "empty")
        wrong_values[q] = g.check_values(q)
    repeated = _repeated_rows(g, checked, wrong_values)
    if repeated:
        first = table.first_row + repeated[0]
        out.append(Finding(
            table.sheet, "w1", "repeated_rows", table.cell_name("w1", first),
            f"row {first} repeats row {first - 1} exactly ({len(repeated)} rows): "
            "training stops, the weights no longer change", len(repeated),
            should_read=g.should_read("w1", first),
            expected=float(g.expected("w1")[repeated[0]]), found=float(g.vals["w1"][repeated[0]]),
        ))  # fmt: skip
    for q in checked:
        wrong = wrong_values[q]
        wrong[repeated] = False
        if not any_formula:  # a pasted table is one finding; its digits are not graded
            continue
        for i in np.flatnonzero(wrong):
            g.mark(q, table.first_row + int(i), "value")
        if q in g.bad:
            out.append(_finding(g, q))
    if table.dangling:
        q = _first_computed(table)
        row = table.last_row + 1
        out.append(Finding(
            table.sheet, q, "unfinished_table", table.cell_name(q, row),
            f"unfinished: {table.rows} iteration{'s' * (table.rows != 1)}; row {row} has the "
            f"updated weights but no {q} … ∂E/∂w8",
            should_read=g.should_read(q, row),
        ))  # fmt: skip
    return result


def _repeated_rows(g: _Grader, checked: list[str], wrong: dict[str, np.ndarray]) -> list[int]:
    """Rows (index in the table) equal to the row above in every column, where training
    should have changed the weights."""
    stack = np.vstack([g.vals[q] for q in checked])
    same = np.all(stack[:, 1:] == stack[:, :-1], axis=0)
    moved = np.any(np.vstack([wrong[w] for w in WEIGHTS if w in wrong]), axis=0)[1:]
    return [int(i) + 1 for i in np.flatnonzero(same & moved)]


def _finding(g: _Grader, q: str) -> Finding:
    t = g.t
    rows = g.bad[q]
    first = min(rows)
    kind = rows[first]
    cell = g.grid.get((first, t.cols[q]))
    formula = ""
    if cell is not None and cell.formula is not None:
        formula = "=" + cell.formula.lstrip("=")
    i = first - t.first_row
    exp = float(g.expected(q)[i])
    found = float(g.vals[q][i])
    if kind == "formula":
        message = g.notes.get((q, first), "its formula does not mean " + q)
    elif kind == "typed":
        message = "a typed number where a formula belongs"
    elif kind == "empty":
        message = "empty where a value belongs"
    else:
        message = "the value is not what the cells it depends on give"
    return Finding(
        t.sheet, q, kind, t.cell_name(q, first), message, len(rows), formula,
        g.should_read(q, first),
        None if np.isnan(exp) else exp, None if np.isnan(found) else found,
    )  # fmt: skip


@dataclass
class Grade:
    path: str
    tables: list[TableResult] = field(default_factory=list)
    reason: str = ""  # why it cannot be checked

    @property
    def findings(self) -> list[Finding]:
        return [f for t in self.tables for f in t.findings]

    @property
    def verdict(self) -> str:
        if self.reason:
            return "cannot_check"
        return "wrong" if self.findings else "correct"

    @property
    def exit_code(self) -> int:
        return {"correct": 0, "wrong": 1, "cannot_check": 2}[self.verdict]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "ok": self.verdict == "correct",
            "verdict": self.verdict,
            "reason": self.reason,
            "tables": [t.to_dict() for t in self.tables],
            "findings": [f.to_dict() for f in self.findings],
        }


def grade_workbook(path: Path | str) -> Grade:
    """Find and grade every iteration table of a workbook. Raises BpxlError for a file that
    cannot be read; a file without a checkable table gets a reason (verdict cannot_check)."""
    pkg = Package(Path(path))
    try:
        return grade_package(pkg, path)
    finally:
        pkg.close()


def grade_package(pkg: Package, path: Path | str) -> Grade:
    """`grade_workbook` on the package of `path`, already open (the caller closes it)."""
    grade = Grade(str(path))
    for title in pkg.parts:
        tables, grid = find_tables(pkg, title)
        for table in tables:
            grade.tables.append(grade_table(table, grid, pkg.titles))
        del grid
    if not grade.tables:
        grade.reason = "no header row with w1…w8 (and the other labels of the 2-2-2 table)"
    elif all(t.unchecked for t in grade.tables):
        grade.reason = "; ".join(t.unchecked for t in grade.tables)
    return grade


__all__ = ["Finding", "Grade", "TableResult", "grade_package", "grade_workbook"]
