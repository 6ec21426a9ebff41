"""The formula check of the LR sheets: one relative formula per column, run on changed inputs.

A formula can be wrong yet give the right number on the sheet's own inputs (E1 written with t2
instead of t1 is invisible while t1 = t2). So every column must hold one relative formula all
the way down, and each column's formula, as found in the file, is compiled to NumPy
(`compile_formula`, against the network's layout) and run on random *changed* inputs (t1 ≠ t2,
random weights and η) against network.py's values of the same quantities.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from openpyxl.utils import get_column_letter

from backprop_xlsx.mlp import layout
from backprop_xlsx.report import INPUT_SETS, ITERATIONS, MAX_FINDINGS, Finding, Report
from backprop_xlsx.verify import batches
from backprop_xlsx.verify.lr_sheet import ETA_KEY, SETUP_VALUE_COL, LrSheet
from backprop_xlsx.verify.optimizers import HYPER_RANGES
from backprop_xlsx.verify.progress import QUIET, Progress
from backprop_xlsx.verify.rounding import BOUNDED, close, exact, exact_inputs, tolerance
from backprop_xlsx.xlsx.formula import (
    MAX_COLUMN,
    NUMPY,
    Algebra,
    Compiler,
    Expr,
    Ref,
    Token,
    Unsupported,
    render,
    tokenize,
)
from backprop_xlsx.xlsx.read import Package


@functools.lru_cache(maxsize=8)
def _setup_key_at_row(sheet: layout.SheetLayout) -> dict[int, str]:
    """Setup row → key, once per layout: a wide net's every formula is compiled against it."""
    return {r: key for key, r in sheet.setup_row.items()}


def compile_formula(
    tokens: list[Token],
    row: int,
    col: int,
    first: bool,
    sheet: layout.SheetLayout,
    algebra: Algebra = NUMPY,
) -> tuple[Expr, set[str]]:
    """A formula in (row, col) of an LR sheet as NumPy operations, and the same-row keys it reads.

    References map to the Env through the network's layout `sheet`: this row → cur[key], the
    row above → prev[key], Setup's value cells → setup[key], the sheet's η cell → eta. Anything
    else (other cells, ranges, other functions, a bound passed) raises Unsupported. The
    operations are `algebra`'s: plain NumPy, or NumPy with rounding-error bounds.
    """
    same_row: set[str] = set()
    setup_key_at_row = _setup_key_at_row(sheet)

    lift = algebra.lift

    def lookup(scope: str, key: str) -> Expr:
        if lift is not None:
            return lambda env: lift(env[scope][key])
        return lambda env: env[scope][key]

    def resolve(ref: Ref) -> Expr:
        r = ref.row if ref.row_abs else row + ref.row
        c = ref.col if ref.col_abs else col + ref.col
        if not (1 <= c <= MAX_COLUMN and r >= 1):
            raise Unsupported("a reference off the sheet (#REF!)")
        where = f"{ref.prefix}{get_column_letter(c)}{r}"
        if ref.sheet == layout.SETUP_SHEET:
            name = setup_key_at_row.get(r)
            if c != SETUP_VALUE_COL or name is None:
                raise Unsupported(f"{where} is not a Setup value cell")
            if not (ref.row_abs or first):
                raise Unsupported(f"{where} moves down the column (write ${r})")
            return lookup("setup", name)
        if ref.sheet is not None:
            raise Unsupported(f"{where} is on another sheet")
        if (r, c) == ETA_KEY:
            if not (ref.row_abs or first):
                raise Unsupported(f"{where} moves down the column (write the η cell absolute)")
            return (lambda env: lift(env["eta"])) if lift is not None else lambda env: env["eta"]
        if c > len(sheet.columns) or (ref.row_abs and not first):
            raise Unsupported(f"{where} is not a cell of this or the previous iteration")
        key = sheet.columns[c - 1].key
        if r == row:
            same_row.add(key)
            return lookup("cur", key)
        if r == row - 1 and not first:
            return lookup("prev", key)
        raise Unsupported(f"{where} is not a cell of this or the previous iteration")

    ranges = batches.range_resolver(sheet, setup_key_at_row, SETUP_VALUE_COL, first)
    return Compiler(tokens, resolve, algebra, ranges).compile(), same_row


def check_structure(sheet: LrSheet, report: Report) -> bool:
    """η numeric and > 0, the header row exact, every data cell present. False: skip values."""
    ok = True
    eta_cell = sheet.top.get(ETA_KEY)
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
    (so t1 ≠ t2, i1 ≠ i2, all w distinct, β1 ≠ β2: optimizers.HYPER_RANGES), and η.

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
        low, high = HYPER_RANGES.get(e.key) or bounds[e.key[0]]
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
    schedule = batches.schedule_env(sheet.layout)
    envs = {
        True: {"cur": exact_inputs(truth[0]), "prev": {}, "setup": exact_inputs(start),
               "eta": exact(eta), **schedule},
        False: {"cur": exact_inputs(stacked(truth[1:])), "prev": exact_inputs(stacked(truth[:-1])),
                "setup": exact_inputs({k: np.tile(v, later) for k, v in start.items()}),
                "eta": exact(np.tile(eta, later)), **schedule},
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


def with_iteration_column(
    sheet: layout.SheetLayout, pkg: Package, titles: list[str]
) -> layout.SheetLayout:
    """The layout with column A the iteration number, unless the first LR sheet's header
    starts with the data instead: a workbook of bpxl before 0.3, correct in its own layout."""
    header = pkg.cells(titles[0], 1, layout.HEADER_ROW).get((layout.HEADER_ROW, 1))
    if header is None or header.value == layout.ITERATION:
        return sheet
    if header.value != sheet.columns[1].header:
        return sheet  # neither: check_structure names the wrong header
    return layout.SheetLayout(sheet.network, iteration_column=False)
