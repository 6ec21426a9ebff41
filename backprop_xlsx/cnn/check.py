"""Prove the CNN sheets (`MNIST digits`, `MNIST weights`, `MNIST net`) of an untrusted workbook.

Two checks, as for the LR sheets, because each alone can be fooled. Formulas: the architecture
table on the weights sheet determines, through layout.py, the one formula every computed cell
must hold, so a shifted window, a wrong channel or a typed-in number is named by its cell.
Values: NumPy (cnn.forward, float64) recomputes the net from the workbook's own weights and
picked image, and every value an engine computed must agree to RTOL (+ ATOL near 0). Sizes are
bounded (layout.MAX_*) before anything is allocated from the file's numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from backprop_xlsx.cnn import layout as L
from backprop_xlsx.cnn.forward import ConvParams, Forward, Weights, forward
from backprop_xlsx.report import CnnStats, Finding, Report
from backprop_xlsx.xlsx.formula import relative_key, tokenize
from backprop_xlsx.xlsx.read import Cell, Package, cell_number, merge_computed

# |found − expected| ≤ RTOL·|expected| + ATOL. A feature-map cell sums up to 9·20 products of
# size ~1; LibreOffice 7.4 against NumPy differs by ≤ 4e-15 there (tests/test_netsheet.py).
RTOL = 1e-9
ATOL = 1e-12


@dataclass
class _Expected:
    """One computed cell: where, its formula, NumPy's value, and what it is (for messages)."""

    sheet: str
    row: int
    col: int
    formula: str
    value: float | None
    what: str
    block: str | None = None  # the feature map it belongs to: one relative formula per block


def has_cnn_sheets(pkg: Package) -> bool:
    """Whether the workbook has any of the trained net's sheets."""
    return any(t in pkg.parts for t in L.SHEETS)


def has_cached_values(pkg: Package) -> bool:
    """Whether the net sheet's formulas carry computed values: its first formula cell does (an
    engine saves all or none; mnist.train leaves none). Reading stops there."""
    if L.NET_SHEET not in pkg.parts:
        return False
    for _, cells in pkg.rows(L.NET_SHEET):
        for _, cell in cells:
            if cell.formula:
                return cell.value is not None
    return False


def check_cnn_sheets(
    pkg: Package, report: Report, computed: Package | None = None
) -> CnnStats | None:
    """Check the CNN sheets when the workbook has them; None when it has none of them.

    Formulas and typed-in numbers are read from `pkg`; computed values from `computed` (a copy
    an engine recalculated: verify's source of values decides) or else from the values cached
    in `pkg`. Without either (never calculated), the formulas alone are checked, and that the
    values are missing is a finding.
    """
    present = [t for t in L.SHEETS if t in pkg.parts]
    if not present:
        return None
    stats = CnnStats()
    missing = [t for t in L.SHEETS if t not in pkg.parts]
    if missing:
        for title in missing:
            report.add(
                Finding(title, "", f"the {title} sheet is missing (the CNN sheets go together)")
            )
        return stats
    weights = _cells(pkg, L.WEIGHTS_SHEET, L.ARCH_HEADER_ROW + L.MAX_STAGES + 2, 16)
    arch = _read_arch(weights, report)
    if arch is None:
        return stats
    n_images = _count_images(pkg, report)
    if n_images is None:
        return stats
    try:
        layout = L.NetLayout(arch, n_images)
    except ValueError as exc:
        report.add(Finding(L.WEIGHTS_SHEET, "", f"architecture table: {exc}"))
        return stats
    # Only the cells the layout names are kept: a file cannot make the verifier hold more.
    w_bounds = (layout.weights_rows, layout.weights_columns)
    n_bounds = (max(layout.net_rows, L.GAP_FIRST_ROW + layout.gap_channels), layout.net_columns)
    weights = _cells(pkg, L.WEIGHTS_SHEET, *w_bounds)
    net = _cells(pkg, L.NET_SHEET, *n_bounds)
    values_w, values_n = weights, net
    have_values = True
    if computed is not None:
        values_w = merge_computed(weights, _cells(computed, L.WEIGHTS_SHEET, *w_bounds))
        values_n = merge_computed(net, _cells(computed, L.NET_SHEET, *n_bounds))
    elif not has_cached_values(pkg):
        problem = "no computed values (never calculated): use --engine libreoffice"
        report.add(Finding(L.NET_SHEET, "", problem))
        have_values = False
    params = _read_weights(layout, weights, report)
    picked = _constant_int(net, L.PICK, 1, n_images, "picked image", report)
    mean = _constant(net, L.MEAN_CELL, "normalisation mean", report)
    std = _constant(net, L.STD_CELL, "normalisation std", report)
    pixels, label = (None, None) if picked is None else _read_image(pkg, picked, report)
    stats.picked, stats.label = picked, label
    result = None
    if have_values and all(x is not None for x in (params, pixels, mean, std)):
        result = forward(arch, params, pixels, mean, std)
        stats.predicted = result.predicted
    known = (params, label) if have_values else (None, None)  # else check formulas only
    expected = itertools.chain(
        _weights_cells(layout, known[0]), _net_cells(layout, result, known[1])
    )
    cells = {L.WEIGHTS_SHEET: (weights, values_w), L.NET_SHEET: (net, values_n)}
    _compare(expected, cells, pkg.titles, result, report, stats)
    return stats


# ---------------------------------------------------------------------------------------------
# Reading what the workbook says


def _value(cell: Cell | None) -> object:
    if cell is None or cell.value is None:
        return ""
    number = cell_number(cell)
    return number if number is not None else cell.value


def _read_arch(cells: dict[tuple[int, int], Cell], report: Report) -> L.Arch | None:
    rows = []
    row = L.ARCH_HEADER_ROW + 1
    while _value(cells.get((row, 1))) != "" and len(rows) <= L.MAX_STAGES + 1:
        rows.append([_value(cells.get((row, c))) for c in range(1, len(L.ARCH_COLUMNS) + 1)])
        row += 1
    try:
        return L.arch_from_rows(rows)
    except ValueError as exc:
        where = L.a1(L.ARCH_HEADER_ROW + 1, 1)
        report.add(Finding(L.WEIGHTS_SHEET, where, f"architecture table: {exc}"))
        return None


def _count_images(pkg: Package, report: Report) -> int | None:
    """The digits sheet's image rows (streamed: only the count is kept)."""
    last = 0
    for row, _ in pkg.rows(L.DIGITS_SHEET):
        last = row
        if last - 1 > L.MAX_IMAGES:
            report.add(Finding(L.DIGITS_SHEET, f"A{row}", f"more than {L.MAX_IMAGES} images"))
            return None
    n = last - L.DIGIT_FIRST_ROW + 1
    if n < 1:
        report.add(Finding(L.DIGITS_SHEET, "A2", "no images"))
        return None
    return n


def _read_image(pkg: Package, picked: int, report: Report) -> tuple[np.ndarray | None, int | None]:
    """The picked row's 784 pixel values and its label."""
    want = L.DIGIT_FIRST_ROW + picked - 1
    row_cells: dict[int, Cell] = {}
    for row, cells in pkg.rows(L.DIGITS_SHEET):
        if row == want:
            row_cells = dict(cells)
            break
    pixels = np.full(L.PIXELS, np.nan)
    for p in range(L.PIXELS):
        col = L.PIXEL_COL + p
        number = cell_number(row_cells.get(col))
        if number is None or not math.isfinite(number):
            cell = row_cells.get(col)
            found = None if cell is None else cell.value
            report.add(
                Finding(L.DIGITS_SHEET, L.a1(want, col), "pixel must be a number", found=found)
            )
            return None, None
        pixels[p] = number
    label = cell_number(row_cells.get(L.LABEL_COL))
    if label is None or label != int(label):
        found = row_cells.get(L.LABEL_COL)
        report.add(
            Finding(
                L.DIGITS_SHEET,
                L.a1(want, L.LABEL_COL),
                "label must be a whole number",
                found=found and found.value,
            )
        )
        return pixels, None
    return pixels, int(label)


def _constant(
    cells: dict[tuple[int, int], Cell], at: tuple[int, int], what: str, report: Report
) -> float | None:
    cell = cells.get(at)
    number = cell_number(cell)
    if cell is not None and cell.formula is not None:
        report.add(Finding(L.NET_SHEET, L.a1(*at), f"{what} must be a typed-in number"))
        return None
    if number is None or not math.isfinite(number):
        found = None if cell is None else cell.value
        report.add(Finding(L.NET_SHEET, L.a1(*at), f"{what} must be a number", found=found))
        return None
    return number


def _constant_int(
    cells: dict[tuple[int, int], Cell], at: tuple[int, int], low: int, high: int, what: str,
    report: Report,
) -> int | None:  # fmt: skip
    number = _constant(cells, at, what, report)
    if number is None:
        return None
    if number != int(number) or not low <= number <= high:
        problem = f"{what} must be a whole number from {low} to {high}"
        report.add(Finding(L.NET_SHEET, L.a1(*at), problem, found=number))
        return None
    return int(number)


def _numbers(
    cells: dict[tuple[int, int], Cell], places: Iterator[tuple[int, int]], what: str,
    report: Report,
) -> list[float] | None:  # fmt: skip
    """Typed-in numbers of the weights sheet; None (and one finding) if any is not."""
    out = []
    for row, col in places:
        cell = cells.get((row, col))
        number = cell_number(cell)
        if number is None or not math.isfinite(number) or (cell and cell.formula is not None):
            found = None if cell is None else (cell.formula and "=" + cell.formula) or cell.value
            problem = f"{what} must be a typed-in number"
            report.add(Finding(L.WEIGHTS_SHEET, L.a1(row, col), problem, found=found))
            return None
        out.append(number)
    return out


def _read_weights(
    layout: L.NetLayout, cells: dict[tuple[int, int], Cell], report: Report
) -> Weights | None:
    """Raw weights and BatchNorm values as the weights sheet holds them."""
    convs: dict[str, ConvParams] = {}
    ok = True
    for name, section in layout.convs.items():
        conv = section.conv
        k = conv.k
        places = [
            (top + di, left + dj)
            for o in range(conv.c_out)
            for c in range(conv.c_in)
            for top, left in [section.raw(o, c)]
            for di in range(k)
            for dj in range(k)
        ]
        w = _numbers(cells, iter(places), f"{name} weight", report)
        params = ConvParams(np.zeros((conv.c_out, conv.c_in, k, k)))
        if w is None:
            ok = False
        else:
            params.weight = np.array(w).reshape(conv.c_out, conv.c_in, k, k)
        rows = [section.row(o) for o in range(conv.c_out)]
        columns = []
        if conv.bn:
            columns += [("gamma", L.GAMMA), ("beta", L.BETA), ("mean", L.RUN_MEAN)]
            columns += [("var", L.RUN_VAR), ("eps", L.EPS)]
        if conv.bias:
            columns.append(("bias", L.CONV_BIAS))
        for field_name, col in columns:
            values = _numbers(cells, ((r, col) for r in rows), f"{name} {field_name}", report)
            if values is None:
                ok = False
            else:
                setattr(params, field_name, np.array(values))
        convs[name] = params
    weights = Weights(convs)
    if layout.fc is not None:
        fc = layout.fc
        n_in, n_out = fc.fc.c_in, fc.fc.c_out
        w = _numbers(
            cells, (fc.weight(k, j) for k in range(n_out) for j in range(n_in)), "fc weight", report
        )
        b = _numbers(cells, (fc.bias(k) for k in range(n_out)), "fc bias", report)
        if w is None or b is None:
            ok = False
        else:
            weights.fc_weight, weights.fc_bias = np.array(w).reshape(n_out, n_in), np.array(b)
    return weights if ok else None


def _cells(pkg: Package, title: str, rows: int, cols: int) -> dict[tuple[int, int], Cell]:
    """The cells of a sheet within rows × cols (streamed; the rest is not kept)."""
    if title not in pkg.parts:
        return {}
    out = {}
    for row, cells in pkg.rows(title):
        if row > rows:
            break
        out.update(((row, col), cell) for col, cell in cells if col <= cols)
    return out


def _weights_cells(layout: L.NetLayout, weights: Weights | None) -> Iterator[_Expected]:
    sheet = L.WEIGHTS_SHEET
    for name, section in layout.convs.items():
        conv = section.conv
        if not conv.bn:
            continue
        p = None if weights is None else weights.convs[name]
        with np.errstate(all="ignore"):
            scale = None if p is None else p.scale()
            folded_w, folded_b = (None, None) if p is None else p.folded()
        for o in range(conv.c_out):
            row = section.row(o)
            value = None if scale is None else float(scale[o])
            yield _Expected(
                sheet, row, L.SCALE, L.scale_formula(row), value, f"{name} scale s[{o}]"
            )
            value = None if folded_b is None else float(folded_b[o])
            formula = L.folded_bias_formula(row, conv.bias)
            yield _Expected(sheet, row, L.FOLDED_BIAS, formula, value, f"{name} folded bias[{o}]")
            for c in range(conv.c_in):
                top, left = section.raw(o, c)
                f_top, f_left = section.folded(o, c)
                for di in range(conv.k):
                    for dj in range(conv.k):
                        formula = L.folded_weight_formula((top + di, left + dj), row)
                        value = None if folded_w is None else float(folded_w[o, c, di, dj])
                        what = f"{name} folded w[{o},{c},{di},{dj}]"
                        yield _Expected(sheet, f_top + di, f_left + dj, formula, value, what)


def _net_cells(
    layout: L.NetLayout, result: Forward | None, label: int | None
) -> Iterator[_Expected]:
    sheet = L.NET_SHEET
    v = (
        (lambda array, *index: None)
        if result is None
        else (lambda array, *index: float(array[index]))
    )
    yield _Expected(
        sheet,
        *L.TRUE_LABEL,
        layout.true_label_formula(),
        None if label is None else label,
        "true label",
    )
    predicted = None if result is None else float(result.predicted)
    yield _Expected(sheet, *L.PREDICTED, layout.predicted_formula(), predicted, "predicted digit")
    for k in range(L.CLASSES):
        row = L.PROB_FIRST_ROW + k
        r = result
        yield _Expected(sheet, row, L.LOGIT_COL, layout.logit_formula(k),
                        r and v(r.logits, k), f"logit z{k}")  # fmt: skip
        yield _Expected(sheet, row, L.EXP_COL, layout.exp_formula(k),
                        r and v(r.exps, k), f"e^(z{k} − max z)")  # fmt: skip
        yield _Expected(sheet, row, L.PROB_COL, layout.prob_formula(k),
                        r and v(r.probs, k), f"probability of {k}")  # fmt: skip
    for c in range(layout.gap_channels):
        value = None if result is None else v(result.gap, c)
        yield _Expected(sheet, *layout.gap_cell(c), layout.gap_formula(c), value, f"mean ch {c}")
    for s, blocks in enumerate(layout.blocks):
        values = None if result is None else (result.x if s == 0 else result.maps[s - 1])
        for b in blocks:
            for i in range(b.size):
                for j in range(b.size):
                    if s == 0:
                        formula = layout.input_formula(i, j)
                    else:
                        formula = layout.stage_formula(s, b.channel, i, j)
                    value = None if values is None else float(values[b.channel, i, j])
                    block = b.label if s and isinstance(layout.arch.stages[s - 1], L.Conv) else None
                    yield _Expected(
                        sheet, b.top + i, b.left + j, formula, value, f"{b.label} ({i}, {j})", block
                    )


# ---------------------------------------------------------------------------------------------
# Comparing


def _same_formula(found: str, want: str, e: _Expected, titles: dict[str, str]) -> bool:
    if found == want:
        return True
    return relative_key(tokenize(found, e.row, e.col, e.sheet, titles)) == relative_key(
        tokenize(want, e.row, e.col, e.sheet, titles)
    )


def _compare(
    expected: Iterator[_Expected],
    cells: dict[str, tuple[dict, dict]],
    titles: dict[str, str],
    result: Forward | None,
    report: Report,
    stats: CnnStats,
) -> None:
    for e in expected:
        formulas, values = cells[e.sheet]
        where = L.a1(e.row, e.col)
        cell = formulas.get((e.row, e.col))
        want = e.formula[1:]
        stats.formulas += 1
        if cell is None or cell.formula is None:
            found = None if cell is None else cell.value
            problem = "empty cell" if found is None else "typed-in value instead of a formula"
            report.add(Finding(e.sheet, where, f"{problem} ({e.what})", found=found,
                               expected_formula=want))  # fmt: skip
            continue
        if not _same_formula(cell.formula, want, e, titles):
            problem = (
                f"formula differs from the one relative formula of block {e.block}"
                if e.block
                else f"wrong formula for {e.what}"
            )
            report.add(Finding(e.sheet, where, problem, found_formula=cell.formula,
                               expected_formula=want))  # fmt: skip
            continue
        if e.value is None:
            continue
        computed = values.get((e.row, e.col))
        got = cell_number(computed)
        if got is None:
            found = None if computed is None else computed.value
            problem = "no computed value" if found is None else "value is not a number"
            report.add(Finding(e.sheet, where, f"{problem} ({e.what})", e.value, found))
            continue
        stats.values += 1
        diff = abs(got - e.value)
        if math.isnan(diff):
            diff = math.inf if not (math.isnan(got) and math.isnan(e.value)) else 0.0
        stats.max_abs = max(stats.max_abs, diff)
        if abs(e.value) >= ATOL / RTOL:
            stats.max_rel = max(stats.max_rel, diff / abs(e.value))
        if not diff <= RTOL * abs(e.value) + ATOL:
            if e.what == "predicted digit" and result is not None and _ties(result, got):
                continue
            report.add(Finding(e.sheet, where, f"wrong value of {e.what}", e.value, got))


def _ties(result: Forward, got: float) -> bool:
    """A predicted digit is right if its probability equals the maximum within the tolerance."""
    if got != int(got) or not 0 <= got < len(result.probs):
        return False
    best = float(result.probs.max())
    return abs(float(result.probs[int(got)]) - best) <= RTOL * best + ATOL
